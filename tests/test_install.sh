#!/usr/bin/env bash
# cmake --install puts the shared library, the static engine, the public headers and nnterp.pc
# where a C program finds them through pkg-config alone. Usage: test_install.sh BUILD_DIR CC
set -euo pipefail
command -v pkg-config >/dev/null || { echo "SKIP: no pkg-config"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cmake --install "$1" --prefix "$dir/prefix" >/dev/null
cat > "$dir/app.c" <<'C'
#include <nnterp.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    nn_err err;
    nn_model *m = NULL;
    if (nn_model_load("/nonexistent-model", &m, &err) != NN_ERR || !strstr(err.msg, "nonexistent"))
        return 1;
    if (strcmp(nn_version_string(), NNTERP_VERSION_STRING))
        return 2;
    printf("%s: %s\n", nn_version_string(), err.msg);
    return 0;
}
C
export PKG_CONFIG_PATH=$dir/prefix/lib/pkgconfig
"$2" -std=c11 -Wall -Wextra -Werror "$dir/app.c" $(pkg-config --cflags --libs nnterp) -o "$dir/app"
LD_LIBRARY_PATH=$dir/prefix/lib "$dir/app"
# the internal plumbing is not installed
[ ! -e "$dir/prefix/include/nnterp/stage.h" ]
# nn_model and nn_hookset are opaque to a program built against the installed headers: reaching
# into a field does not compile (the accessors of api.h are the interface)
for field in 'm->cfg.n_layers' 'hs->n_layers' 'sizeof(nn_model)'; do
  printf '#include <nnterp.h>\nint f(nn_model *m, nn_hookset *hs) { (void)m; (void)hs; return (int)(%s); }\n' "$field" >"$dir/peek.c"
  if "$2" -std=c11 -c "$dir/peek.c" $(pkg-config --cflags nnterp) -o "$dir/peek.o" 2>/dev/null; then
    echo "FAIL: '$field' compiles against the installed headers (not opaque)"
    exit 1
  fi
done
