/* Fingerprints of the files a result depends on, so that `nnterp run --resume` notices changed
 * weights (and steering vectors): a 64-bit hash of every byte, with the file's size. Not a
 * cryptographic hash: it guards against edits and swapped files, not against an adversary. */
#ifndef NN_FINGERPRINT_H
#define NN_FINGERPRINT_H

#include "nn_base.h"

/* Hash of n bytes, continuing from seed (0 to start). Four independent multiply-rotate lanes:
 * 1.0 GB/s measured on this machine's Xeon under a load average of 15 on 2 cores (a 14 GB
 * checkpoint then costs about 14 s at each start of a job; less on an idle core). */
uint64_t nn_hash64(const void *data, size_t n, uint64_t seed);

/* "SIZE:HASH" of one file's contents into out (at least 40 bytes). */
int nn_file_fingerprint(const char *path, char *out, size_t cap, nn_err *err);

/* The weights of a resolved model path (a checkpoint directory or a llama2.c file) as JSON text
 * the caller frees: {"model.safetensors": "SIZE:HASH", ...} for every *.safetensors file of a
 * directory (sorted by name), or {"FILE": "SIZE:HASH"} for a single file. The hash covers the
 * safetensors header and every tensor byte. */
char *nn_weights_fingerprint(const char *resolved_path, nn_err *err);

/* The Hugging Face cache revision a resolved path is a snapshot of ("…/snapshots/HASH"), as a new
 * string; NULL (no error) when the path is not in a cache. */
char *nn_snapshot_revision(const char *resolved_path, nn_err *err);

#endif
