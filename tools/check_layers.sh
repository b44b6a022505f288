#!/usr/bin/env bash
# Dependencies point one way (docs/design.md): engine knows nothing of MPI, HDF5, io or jobs; io knows
# nothing of models; jobs write through a sink, not to HDF5. Fails listing each forbidden include.
set -u
cd "$(dirname "$0")/.."
status=0
check() { # folder, forbidden-include regex, why
  local hits
  hits=$(grep -nE "#include *[<\"]($2)" -r "$1" --include='*.c' --include='*.h' 2>/dev/null)
  if [ -n "$hits" ]; then
    echo "layering: $1 must not include $3:"
    echo "$hits"
    status=1
  fi
}
check engine 'mpi\.h|hdf5\.h|H5|h5file|sink\.h|trace\.h|h5_sink' "MPI, HDF5, io or jobs"
check base 'mpi\.h|hdf5\.h|cblas|model\.h|forward\.h|h5file' "anything above it"
check io 'model\.h|forward\.h|hooks\.h|safetensors\.h|cblas|trace\.h|sink\.h' "the model or jobs"
check jobs 'mpi\.h|hdf5\.h|h5file\.h|h5_sink' "MPI or HDF5 (write through a sink)"
[ $status -eq 0 ] && echo "layering: ok"
exit $status
