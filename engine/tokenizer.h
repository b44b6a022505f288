/* Tokenizers, exact: Hugging Face tokenizer.json (BPE models: byte-level like GPT-2 / Llama 3 /
 * Qwen2, and SentencePiece-style with byte fallback like Llama 2 / Mistral), and llama2.c's
 * tokenizer.bin. Usable without loading any weights.
 *
 * Encoding follows the Hugging Face tokenizers library step by step: added/special tokens are
 * matched first, then normalizer, pre-tokenizer, BPE, post-processor. Decoding runs the declared
 * decoder chain. A component this code does not implement is an error naming it, never a silent
 * approximation. */
#ifndef NN_TOKENIZER_H
#define NN_TOKENIZER_H

#include "nn_base.h"

typedef struct nn_tokenizer nn_tokenizer;

/* A growable id list; free ids with nn_free. */
typedef struct nn_ids {
    int32_t *ids;
    size_t n, cap;
} nn_ids;

int nn_ids_push(nn_ids *v, int32_t id, nn_err *err);
void nn_ids_free(nn_ids *v);

/* path: a directory holding tokenizer.json (and tokenizer_config.json when present), a
 * tokenizer.json file, or a llama2.c tokenizer.bin. */
int nn_tokenizer_load(const char *path, nn_tokenizer **out, nn_err *err);
/* The tokenizer that goes with MODEL (docs/spec.md §1): tokenizer_path when given, else
 * tokenizer.json in a checkpoint directory, or tokenizer.bin (then tok<vocab>.bin) beside a
 * llama2.c checkpoint. None found is an error when required; otherwise *out stays NULL and NN_OK is
 * returned. */
int nn_tokenizer_load_for_model(const char *model_path, const char *tokenizer_path, int vocab,
                                bool required, nn_tokenizer **out, nn_err *err);
void nn_tokenizer_free(nn_tokenizer *t);

/* Appends the ids of text (UTF-8, len bytes) to out. add_special adds the BOS/EOS/template
 * tokens the tokenizer declares (what transformers' tokenizer(text) does by default). */
int nn_tokenizer_encode(nn_tokenizer *t, const char *text, size_t len, bool add_special,
                        nn_ids *out, nn_err *err);
/* Decodes ids into a new NUL-terminated UTF-8 string (caller frees). skip_special drops special
 * tokens (transformers' skip_special_tokens). */
int nn_tokenizer_decode(const nn_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                        char **out, nn_err *err);

size_t nn_tokenizer_vocab_size(const nn_tokenizer *t);
/* The token's piece as stored in the vocabulary (e.g. "Ġworld", "▁Hello", "<0x0A>"); NULL when
 * id is out of range. */
const char *nn_tokenizer_piece(const nn_tokenizer *t, int32_t id, size_t *len);
int32_t nn_tokenizer_bos(const nn_tokenizer *t); /* -1 when none */
int32_t nn_tokenizer_eos(const nn_tokenizer *t);
bool nn_tokenizer_is_special(const nn_tokenizer *t, int32_t id);
/* Looks a piece up (an exact vocabulary entry); -1 when absent. */
int32_t nn_tokenizer_find(const nn_tokenizer *t, const char *piece, size_t len);

/* Streaming decode for generation: feed ids one at a time; each call gives the text that became
 * final, whole UTF-8 characters only (a character split over byte-fallback tokens waits for its
 * last byte). */
typedef struct nn_detokenizer {
    const nn_tokenizer *tok;
    nn_ids ids;
    size_t prefix_offset, read_offset;
    bool skip_special;
} nn_detokenizer;

void nn_detokenizer_init(nn_detokenizer *d, const nn_tokenizer *t, bool skip_special);
/* Gives the prompt's ids as left context (not output), so the first generated token decodes as it
 * would after them (no stray leading space after BOS, for instance). */
int nn_detokenizer_prime(nn_detokenizer *d, const int32_t *prompt, size_t n, nn_err *err);
/* *out is a new string (possibly empty) the caller frees. */
int nn_detokenizer_push(nn_detokenizer *d, int32_t id, char **out, nn_err *err);
void nn_detokenizer_free(nn_detokenizer *d);

#endif
