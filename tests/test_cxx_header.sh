#!/usr/bin/env bash
# nnterp.h compiles as C++ (extern "C", no C-only constructs in the public headers) and a C++
# program links against libnnterp.so. Usage: test_cxx_header.sh LIBNNTERP.so SOURCE_DIR BUILD_DIR
set -euo pipefail
cxx=$(command -v c++ || command -v g++ || command -v clang++ || true)
[ -n "$cxx" ] || { echo "SKIP: no C++ compiler"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/check.cpp" <<'CPP'
#include "nnterp.h"
#include <cstdio>
int main()
{
    nn_err err;
    nn_model *m = nullptr;
    if (nn_model_load("/nonexistent-model", &m, &err) != NN_ERR)
        return 1;
    if (nn_version_number() != NNTERP_VERSION_MAJOR * 10000 + NNTERP_VERSION_MINOR * 100 +
                                   NNTERP_VERSION_PATCH)
        return 2;
    std::printf("%s | %s\n", nn_version_string(), err.msg);
    return 0;
}
CPP
"$cxx" -std=c++17 -Wall -Wextra -Werror -I"$2/engine" -I"$2/base" -I"$3/generated" \
  "$dir/check.cpp" "$1" -o "$dir/check"
LD_LIBRARY_PATH=$(dirname "$1") "$dir/check"
