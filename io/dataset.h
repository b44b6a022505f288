/* Prompt datasets: JSONL (one object a line, the prompt in a named field, optional per-prompt
 * targets) or plain text (one prompt a line). Every prompt is validated UTF-8; errors name the
 * file and line. Knows nothing of models or tokenizers. */
#ifndef NN_DATASET_H
#define NN_DATASET_H

#include "nn_base.h"

typedef struct nn_dataset {
    size_t n;              /* prompts */
    char *text;            /* all prompt texts back to back (not NUL-separated) */
    int64_t *text_offsets; /* [n + 1] prompt i is text[text_offsets[i] .. text_offsets[i+1]) */
    int64_t *source_line;  /* [n] 1-based line in the file */
    char **targets;        /* [n] the targets field as JSON text, or NULL (JSONL only) */
    /* [n] true when the line holds a conversation ("messages": [...]) instead of the text
     * field: its prompt text is then the whole JSON line, for a chat template to render (its
     * other keys are template variables). NULL when no line does. */
    bool *is_chat;
} nn_dataset;

/* The longest line accepted by default (a job's dataset.max_line_bytes). */
#define NN_DATASET_MAX_LINE_BYTES ((size_t)16 << 20)

/* format: "jsonl", "text", or NULL to decide by the extension (.jsonl/.json: JSONL, else text).
 * field: the JSONL field holding the prompt; targets_field: NULL or the field of targets. Blank
 * lines are skipped (their line numbers still count). A line longer than max_line_bytes (0: the
 * default above) is an error found before anything is allocated: the file is mapped, not read. */
/* A JSONL line without the prompt field but with a list "messages" is a conversation (is_chat). */
int nn_dataset_read(const char *path, const char *format, const char *field,
                    const char *targets_field, size_t max_line_bytes, nn_dataset *out, nn_err *err);
void nn_dataset_free(nn_dataset *d);

#endif
