# Tests. Test data comes from ../shared beside the checkout (NNTERP_SHARED to override); a test
# whose data is absent exits 77 and CTest reports it skipped, loudly.
set(NNTERP_SHARED "${CMAKE_SOURCE_DIR}/../shared" CACHE PATH "shared test data directory")
set(REF "${NNTERP_SHARED}/reference")

add_library(nn_test STATIC tests/nn_test.c)
target_include_directories(nn_test PUBLIC tests)
target_link_libraries(nn_test PUBLIC nn_base)

function(nn_test name)
  add_executable(${name} tests/${name}.c)
  target_link_libraries(${name} PRIVATE nn_test ${ARGN})
endfunction()

nn_test(test_reference nn_engine)
nn_test(test_invariants nn_engine)
target_compile_definitions(test_invariants PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
nn_test(test_stories nn_engine)
nn_test(test_loading nn_engine)
nn_test(test_io nn_io)
# The file formats' one definition (jobs/store.h) against the docs.
nn_test(test_store_format nn_jobs)
target_compile_definitions(test_store_format PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
if(TARGET nn_plot)
  nn_test(test_html nn_plot)
endif()
nn_test(test_tokenizer nn_engine)
target_compile_definitions(test_tokenizer PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
nn_test(test_unicode nn_engine)
nn_test(test_toolkit nn_engine)
target_compile_definitions(test_toolkit PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
nn_test(test_api nn_engine)
nn_test(test_config_ext nn_engine)
nn_test(test_context nn_engine)
target_compile_definitions(test_context PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
nn_test(test_generate_batch nn_engine)
target_compile_definitions(test_generate_batch PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
nn_test(test_chat nn_engine)
nn_test(test_jinja nn_engine)
nn_test(test_bf16 nn_engine)
target_compile_definitions(test_bf16 PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
# Sparse autoencoders against SAELens (tests/sae/, docs/sae.md).
nn_test(test_sae nn_engine)
target_compile_definitions(test_sae PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")

function(nn_add_test name)
  add_test(NAME ${name} COMMAND ${ARGN})
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77
                       ENVIRONMENT "NNTERP_SHARED=${NNTERP_SHARED}")
endfunction()

# Every hook point of every supported family against Hugging Face's reference dumps.
foreach(arch gpt2 llama llama_gqa llama31_rope mistral mistral_swa8 qwen2 gemma gemma2 gpt_neox
        gptj opt phi phi3 stablelm olmo starcoder2 mixtral qwen2_moe gpt_bigcode falcon bloom
        cohere)
  nn_add_test(reference_${arch} test_reference ${REF}/tiny/${arch}/ref-f32)
endforeach()
# BF16 weights (reference computed in float32 from the bf16 weights) and sharded F32 checkpoints.
foreach(arch gpt2 llama_gqa qwen2 gemma2 mixtral)
  nn_add_test(reference_${arch}_bf16 test_reference ${REF}/tiny/${arch}/ref-bf16)
  nn_add_test(reference_${arch}_sharded test_reference ${REF}/tiny/${arch}/ref-f32
              --model ${REF}/tiny/${arch}/model-f32-sharded)
  # F16 weights against the F32 references: the weights differ by their rounding (up to 4.9e-4,
  # 2^-11 relative; summary.json), which the 2-3 layers amplify to at most 7e-3 on activations,
  # 1.2e-2 on logits and 1.3e-3 on probabilities (measured). The tolerances are 4x that; a
  # misloaded tensor or a wrong layout gives errors of order 1. Argmax must still agree.
  nn_add_test(reference_${arch}_f16 test_reference ${REF}/tiny/${arch}/ref-f32
              --model ${REF}/tiny/${arch}/model-f16 --tol-act 5e-2 --tol-prob 5e-3)
endforeach()
# bfloat16 compute (oneDNN on AMX; the tests skip where it does not run on AMX). bfloat16x3 on BF16
# weights is float32-grade: the float32 references' own tolerances (measured worst 3e-6).
# bfloat16 rounds F32 weights and every GEMM input: measured worst over the 23 families 0.13 on
# activations (4-6e-2 of their rms) and 1.6e-2 on probabilities, with a few near-tie argmax
# flips in these random tiny models (docs/engine.md); bounds ~2.5x that, far below the O(1)
# errors of a wrong scale or layout. Qwen2-MoE flips a routing choice (0.52 / 0.054 measured).
if(NNTERP_WITH_DNNL)
  foreach(arch gpt2 llama_gqa qwen2 gemma2 mixtral)
    nn_add_test(reference_${arch}_bf16x3 test_reference ${REF}/tiny/${arch}/ref-bf16
                --compute bfloat16x3)
  endforeach()
  foreach(arch gpt2 llama llama_gqa llama31_rope mistral mistral_swa8 qwen2 gemma gemma2 gpt_neox
          gptj opt phi phi3 stablelm olmo starcoder2 mixtral gpt_bigcode falcon bloom cohere)
    nn_add_test(reference_${arch}_compute_bf16 test_reference ${REF}/tiny/${arch}/ref-f32
                --compute bfloat16 --tol-act 0.3 --tol-prob 0.04)
  endforeach()
  nn_add_test(reference_qwen2_moe_compute_bf16 test_reference ${REF}/tiny/qwen2_moe/ref-f32
              --compute bfloat16 --tol-act 1.2 --tol-prob 0.12)
  nn_add_test(bf16 test_bf16)
  nn_add_test(compute ${CMAKE_SOURCE_DIR}/tests/test_compute.sh $<TARGET_FILE:nnterp>
              ${CMAKE_SOURCE_DIR})
endif()
# The trained stories260K: its HF copy, and the llama2.c .bin against the same references.
nn_add_test(reference_stories260K test_reference ${REF}/stories260K/ref-f32 --tol-prob 2e-5)
nn_add_test(reference_stories260K_bin test_reference ${REF}/stories260K/ref-f32 --tol-prob 2e-5
            --model ${NNTERP_SHARED}/models/stories260K/stories260K.bin)

# The families of 2025-26 against transformers 5 (tests/reference, committed; written by
# tools/reference/make_reference.py): F32, BF16 where the family has it, sharded where it has one.
# gpt-oss, DeepSeek-V3 and GLM-4's MoE manifests hold router_probabilities.i too.
set(NEW_REF "${CMAKE_SOURCE_DIR}/tests/reference")
set(NN_NEW_REFERENCE qwen3 qwen3_moe qwen3_moe_step2 gemma3_text olmo2 olmo3 smollm3 llama32
    mistral_head_dim phi4_mini granite gpt_oss deepseek_v3 deepseek_v3_no_q_lora glm4)
foreach(arch ${NN_NEW_REFERENCE})
  nn_add_test(reference_${arch} test_reference ${NEW_REF}/${arch}/ref-f32)
  if(EXISTS ${NEW_REF}/${arch}/ref-bf16)
    nn_add_test(reference_${arch}_bf16 test_reference ${NEW_REF}/${arch}/ref-bf16)
  endif()
  if(EXISTS ${NEW_REF}/${arch}/model-f32-sharded)
    nn_add_test(reference_${arch}_sharded test_reference ${NEW_REF}/${arch}/ref-f32
                --model ${NEW_REF}/${arch}/model-f32-sharded)
  endif()
endforeach()
# gpt-oss as OpenAI released it: MXFP4 experts, dequantized at load (references: transformers'
# own dequantizing loader on the same file).
nn_add_test(reference_gpt_oss_mxfp4 test_reference ${NEW_REF}/gpt_oss/ref-mxfp4)

nn_add_test(config_ext test_config_ext)
# The older families' checkpoints with config.json as transformers 5 writes it.
nn_add_test(transformers5_configs ${CMAKE_SOURCE_DIR}/tests/test_transformers5_configs.sh
            $<TARGET_FILE:test_reference>)
nn_add_test(invariants test_invariants)
# The same invariants for attention sinks + stacked experts (gpt-oss) and multi-head latent
# attention + group-limited routing + dense first layers (DeepSeek-V3), and GLM-4's sandwich norms
# with partial interleaved rotary.
nn_add_test(invariants_sinks_mla test_invariants ${NEW_REF}/gpt_oss/model-f32
            ${NEW_REF}/deepseek_v3/model-f32 ${NEW_REF}/deepseek_v3_no_q_lora/model-f32
            ${NEW_REF}/glm4/model-f32)
nn_add_test(sae test_sae)
nn_add_test(stories260K_greedy test_stories)
nn_add_test(loading test_loading)
nn_add_test(io test_io)
nn_add_test(store_format test_store_format)
if(TARGET nn_plot)
  nn_add_test(html test_html)
endif()
nn_add_test(tokenizer test_tokenizer)
nn_add_test(unicode test_unicode)
nn_add_test(toolkit test_toolkit)
nn_add_test(api test_api)
nn_add_test(context test_context)
nn_add_test(generate_batch test_generate_batch)
# Chat templates: ../shared/chat the way it was rendered (transformers 4.4x), the same cases the
# transformers 5 way (they agree), and nnterp's own cases rendered by transformers 5 itself
# (tools/chat_expected.py wrote tests/chat/*.jsonl; the templates are the shared tokenizers').
nn_add_test(chat_shared test_chat)
file(GLOB NN_SHARED_CHAT_CASES ${NNTERP_SHARED}/chat/*.jsonl)
if(NN_SHARED_CHAT_CASES)
  nn_add_test(chat_shared_transformers5 test_chat --transformers 5 ${NN_SHARED_CHAT_CASES})
endif()
file(GLOB NN_CHAT_CASES ${CMAKE_SOURCE_DIR}/tests/chat/*.jsonl)
nn_add_test(chat_transformers test_chat ${NN_CHAT_CASES})
nn_add_test(chat_cli ${CMAKE_SOURCE_DIR}/tests/test_chat_cli.sh $<TARGET_FILE:nnterp>)
nn_add_test(repeat_target ${CMAKE_SOURCE_DIR}/tests/test_repeat_target.sh $<TARGET_FILE:nnterp>)
nn_add_test(jinja test_jinja ${CMAKE_SOURCE_DIR}/tests/jinja/expected.jsonl)
nn_add_test(cli ${CMAKE_SOURCE_DIR}/tests/test_cli.sh $<TARGET_FILE:nnterp>)
# nnterp lens --json and patchscope --json against their -o stores, bit for bit.
nn_add_test(toolkit_json ${CMAKE_SOURCE_DIR}/tests/test_toolkit_json.sh $<TARGET_FILE:nnterp>)
nn_add_test(layering ${CMAKE_SOURCE_DIR}/tools/check_layers.sh)
# The vector clones of the loops between GEMMs give the same bits as the baseline build (three
# release builds of nnterp, ~20 s; not repeated in the sanitizer build, whose inner builds would
# be the same release builds).
if(NOT NNTERP_SANITIZE AND NOT NNTERP_FUZZ)
  nn_add_test(vector_clones ${CMAKE_SOURCE_DIR}/tools/check_clones.sh ${CMAKE_C_COMPILER})
endif()
nn_add_test(run ${CMAKE_SOURCE_DIR}/tests/test_run.sh $<TARGET_FILE:nnterp>)
nn_add_test(mpi ${CMAKE_SOURCE_DIR}/tests/test_mpi.sh $<TARGET_FILE:nnterp>)
# The store against concurrent writers, edited inputs, changed weights, torn ledgers, reruns and bad
# outputs (issue 17), --resume's identity, --dry-run; SIGTERM/SIGINT/SIGUSR1 sent to mpirun, and a
# resume under other pipeline splits.
nn_add_test(store ${CMAKE_SOURCE_DIR}/tests/test_store.sh $<TARGET_FILE:nnterp>)
nn_add_test(mpi_signals ${CMAKE_SOURCE_DIR}/tests/test_mpi_signals.sh $<TARGET_FILE:nnterp>)
nn_add_test(progress ${CMAKE_SOURCE_DIR}/tests/test_progress.sh $<TARGET_FILE:nnterp>)
# activation_patch against nn_activation_patch, self-patching, layouts, resume, its plot.
nn_add_test(patch ${CMAKE_SOURCE_DIR}/tests/test_patch.sh $<TARGET_FILE:nnterp>)
nn_add_test(intervene ${CMAKE_SOURCE_DIR}/tests/test_intervene.sh $<TARGET_FILE:nnterp>)
# nnterp skip, attn-edit, object-lens --json against those job ops' stores, bit for bit; usage errors.
nn_add_test(intervene_cli ${CMAKE_SOURCE_DIR}/tests/test_intervene_cli.sh $<TARGET_FILE:nnterp>)
# collect of attention_probabilities against nnterp trace, rows as distributions, layouts, resume.
nn_add_test(attention_job ${CMAKE_SOURCE_DIR}/tests/test_attention_job.sh $<TARGET_FILE:nnterp>)
# patchscope_lens target_field and steer contrast_fields: rows equal the fixed ops', layouts, resume.
nn_add_test(dataset_fields ${CMAKE_SOURCE_DIR}/tests/test_dataset_fields.sh $<TARGET_FILE:nnterp>)
nn_add_test(sae_job ${CMAKE_SOURCE_DIR}/tests/test_sae_job.sh $<TARGET_FILE:nnterp>)
nn_add_test(sae_plot ${CMAKE_SOURCE_DIR}/tests/test_sae_plot.sh $<TARGET_FILE:nnterp>)
# Pictures: io/plot read back pixel by pixel; the CLI's PNG and HTML against the lens' numbers;
# the page rendered by headless Chromium (skipped without it).
nn_test(test_plot nn_io)
nn_add_test(plot test_plot)
nn_add_test(plot_cli ${CMAKE_SOURCE_DIR}/tests/test_plot.sh $<TARGET_FILE:nnterp>)
nn_add_test(plot_chromium ${CMAKE_SOURCE_DIR}/tests/test_plot_chromium.sh $<TARGET_FILE:nnterp>)
# The bundled model: the engine's logits equal its PyTorch training code's; the toolkit finds
# what it knows (the lens's answer rises over the last layers; patchscope reads words back out
# of the repeat prompt; steering toward French works).
nn_add_test(demo_model /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/test_demo_model.py
            $<TARGET_FILE:nnterp> ${CMAKE_SOURCE_DIR})
nn_add_test(demo_semantics ${CMAKE_SOURCE_DIR}/tests/test_demo_semantics.sh $<TARGET_FILE:nnterp>
            ${CMAKE_SOURCE_DIR})

# Fuzz corpora (seeds, and the reproducer of every finding fixed) replayed through each fuzz
# target without libFuzzer: a regression test in every build. tools/fuzz.sh runs the fuzzers.
set(NN_FUZZ_REPLAY safetensors st_index config tokenizer_json tokenizer_encode llama2c_model
    llama2c_tokenizer npy job dataset jinja sae_cfg)
foreach(t ${NN_FUZZ_REPLAY})
  add_executable(replay_${t} tests/fuzz/replay.c tests/fuzz/fuzz_${t}.c)
  target_compile_definitions(replay_${t} PRIVATE NNTERP_SHARED_DEFAULT="${NNTERP_SHARED}")
  target_link_libraries(replay_${t} PRIVATE nn_engine)
  nn_add_test(fuzz_replay_${t} replay_${t} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${t})
endforeach()
target_link_libraries(replay_job PRIVATE nn_jobs)
target_link_libraries(replay_dataset PRIVATE nn_io)
target_compile_definitions(replay_sae_cfg PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")

# Every allocation of model loading, tokenizers, a forward pass with hooks, the logit lens, the job
# file and the dataset reader failed in turn: errors, no crash, no leak (LeakSanitizer under ASan).
nn_test(test_alloc_failures nn_jobs nn_io)
target_compile_definitions(test_alloc_failures PRIVATE NNTERP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
nn_add_test(alloc_failures test_alloc_failures)

# Hostile files and arguments for every parser: exact errors naming the file, nothing left behind.
nn_test(test_malformed nn_coord)
nn_add_test(malformed test_malformed)
# A few of those bad inputs through the command line under valgrind (skipped without valgrind and
# in the AddressSanitizer build).
nn_add_test(valgrind ${CMAKE_SOURCE_DIR}/tests/test_valgrind.sh $<TARGET_FILE:nnterp>)

# The Python package over libnnterp.so (python/, docs/python.md), with Debian's pytest; under the
# sanitizer build with the ASan runtime preloaded into the (uninstrumented) interpreter.
if(NNTERP_SHARED_LIBRARY)
  if(NNTERP_SANITIZE)
    set(nn_python_mode asan)
  endif()
  nn_add_test(python ${CMAKE_SOURCE_DIR}/tests/test_python.sh $<TARGET_FILE:nnterp_shared>
              $<TARGET_FILE:nnterp> ${CMAKE_SOURCE_DIR} ${nn_python_mode})
  set_property(TEST python APPEND PROPERTY ENVIRONMENT "CC=${CMAKE_C_COMPILER}")
  # Not in the sanitizer builds: a program linking the sanitized library needs the sanitizer
  # runtime linked in by clang, which a plain C++ link does not do; the check is about the header.
  if(NOT NNTERP_SANITIZE AND NOT NNTERP_FUZZ)
    nn_add_test(cxx_header ${CMAKE_SOURCE_DIR}/tests/test_cxx_header.sh
                $<TARGET_FILE:nnterp_shared> ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
    nn_add_test(install ${CMAKE_SOURCE_DIR}/tests/test_install.sh ${CMAKE_BINARY_DIR}
                ${CMAKE_C_COMPILER})
  endif()
endif()
