/* Chat templates: arbitrary bytes compiled as a Jinja template and rendered with a conversation
 * (messages, tools, special tokens), under small limits: any input must end in a string or a
 * clean error, within the step, depth, memory and output bounds. */
#include <string.h>

#include "fuzz_util.h"
#include "jinja.h"

static const char vars_json[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", "
    "\"content\": \" Hi «🐱» \\n\"}, {\"role\": \"assistant\", \"content\": \"Ok.\", "
    "\"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1.5}}}]}], "
    "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}], "
    "\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nn_err err;
    nn_jinja *t = NULL;
    nn_jinja_vars *v = NULL;
    if (nn_jinja_compile("fuzz.jinja", (const char *)data, size, &t, &err) == NN_OK &&
        nn_jinja_vars_new(&v, &err) == NN_OK &&
        nn_jinja_vars_set_json_members(v, vars_json, strlen(vars_json), &err) == NN_OK) {
        nn_jinja_limits lim = nn_jinja_default_limits();
        lim.max_steps = 200000;
        lim.max_memory = (size_t)16 << 20;
        lim.max_output = (size_t)1 << 20;
        char *out = NULL;
        size_t n;
        if (nn_jinja_render(t, v, 0, &lim, &out, &n, &err) == NN_OK && strlen(out) > n)
            __builtin_trap(); /* the length must cover the whole string */
        nn_free(out);
    }
    nn_jinja_vars_free(v);
    nn_jinja_free(t);
    return 0;
}
