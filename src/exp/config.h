// The experiment configuration (YAML, read with yaml-cpp). Example (examples/toy.yaml):
//
//   name: toy
//   models:            # name -> HF model directory (relative paths: against the config's folder)
//     sft: ../data/toy/sft
//     grpo: ../data/toy/grpo
//     instruct: ../data/toy/instruct
//   targets: [instruct]                 # models the vectors are added to (default: [instruct])
//   vectors:                            # default: [{name: v, expr: "grpo - sft"}]
//     - {name: v, expr: "grpo - sft"}
//   alphas: [-1, 0, 0.25, 0.5, 0.75, 1, 1.5]   # the default
//   conditions: [plain, think]          # or {name: NAME, think: bool, perturb: [distractor, ...]}
//   tasks:
//     - {name: toy_arith, limit: 300, chat: true, num_fewshot: 0, max_gen_tokens: 96}
//   random_control: {seed: 1234, alphas: [1, -1]}   # or `random_control: false`
//   compress:                           # compressed versions of each vector, evaluated at α = 1
//     - {method: sparse, density: 0.01}  # (scope: tensor | global), {method: int8}, {method: lora, rank: 16}
//   eval: {threads: 0, batch: 16, seed: 1234}   # kv_cache_dtype: bf16 | f16 (engine; default f32)
//   out: rvec-experiment
//   keep_models: false
//   backend:                            # default: rvec's engine in-process
//     kind: openai
//     launch: "vllm serve {model} --port {port} --dtype bfloat16 --seed 1234"   # managed servers
//     instances: 2
//     gpus: [0, 1]
//     ready_timeout: 900
//     # or, for a grid of one model: base_url: http://127.0.0.1:8000/v1
//
// Unknown keys are errors (a typo must not silently change the experiment).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace rvec::experiment {

struct TaskConfig {
  std::string name;
  int64_t limit = -1;       // -1: the whole evaluation split
  int num_fewshot = -1;     // -1: the task's default
  bool chat = false;        // apply the model's chat template
  int max_gen_tokens = 0;   // 0: the task's default
  std::string data_dir;     // "" : the shipped data
  int samples = 1;          // generations per document (math tasks: avg@K, pass@K, maj@K)
  double temperature = 0;   // with samples > 1
  double top_p = 1;
  // With chat: extra chat-template variables, e.g. {enable_thinking: false} (Qwen3).
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();
  double min_p = 0;         // vLLM's min_p (0: off)
  // Canonical description of everything that changes the task's scores (cache identity).
  std::string key() const;
};

struct ConditionConfig {
  std::string name = "plain";
  bool think = false;
  std::vector<std::string> perturb;
  std::string key() const;
};

struct VectorConfig {
  std::string name = "v";
  std::string tuned = "grpo", base = "sft";  // v = tuned - base (model names)
};

// A compressed version of the vector (rvec compress), evaluated at α = 1 next to the lossless one.
struct CompressConfig {
  std::string method;            // sparse | int8 | lora
  double density = 0.1;          // sparse
  std::string scope = "tensor";  // sparse: tensor | global
  int rank = 0;                  // lora (or energy)
  double energy = 0;
  std::string key() const;       // "sparse-d0.01", "sparse-d0.05-global", "int8", "lora-r16", "lora-e0.9"
};

struct ControlConfig {
  bool enabled = true;
  uint64_t seed = 1234;
  std::vector<double> alphas{1.0, -1.0};
};

// Where cells are evaluated: rvec's engine (kind engine), or OpenAI-compatible servers (kind
// openai) that rvec launches per model from `launch`, or one already running at `base_url`.
struct BackendConfig {
  std::string kind = "engine";    // engine | openai
  std::string launch;             // command template: {model}, {port}, {gpu}
  int instances = 1;
  std::vector<std::string> gpus;  // CUDA_VISIBLE_DEVICES of instance i: gpus[i % size]
  int port = 0;                   // first port (0: free ports)
  double ready_timeout = 900, stop_grace = 30;
  std::vector<std::string> base_urls;  // an existing server (one-model grids only)
  std::string served_model, api_key_env;
  int concurrency = 8, max_retries = 5;
  double timeout = 600;
  double wait_for_server = 0;  // base_url: seconds to keep probing a server that does not answer yet
  bool chat_endpoint = false;
  // What changes scores (part of each cell's fingerprint when not the engine): kind, launch
  // template, endpoint kind. Ports, instances and GPUs do not.
  std::string key() const;
};

struct ExperimentConfig {
  std::string name = "experiment";
  std::map<std::string, std::filesystem::path> models;
  std::vector<std::string> targets{"instruct"};
  std::vector<VectorConfig> vectors{VectorConfig{}};
  std::vector<double> alphas{-1, 0, 0.25, 0.5, 0.75, 1, 1.5};
  std::vector<ConditionConfig> conditions{ConditionConfig{}};
  std::vector<TaskConfig> tasks;
  ControlConfig control;
  std::vector<CompressConfig> compress;
  std::filesystem::path out = "rvec-experiment";
  bool keep_models = false;
  int threads = 0, batch = 16;
  double kv_cache_gb = 0;  // `rvec experiment --kv-cache-gb` (not part of the config file)
  // eval.kv_cache_dtype: the engine's KV cache element type ("f32", "bf16", "f16"); part of each
  // cell's fingerprint unless f32.
  std::string kv_cache_dtype = "f32";
  uint64_t seed = 1234;
  BackendConfig backend;

  const std::filesystem::path& model_path(const std::string& name) const;  // throws naming the config
  std::string origin;  // the config file (for messages)
};

// `base_dir` resolves relative model paths and `out`; `origin` names the source in errors.
ExperimentConfig parse_config(const std::string& yaml, const std::filesystem::path& base_dir,
                              const std::string& origin);
ExperimentConfig load_config(const std::filesystem::path& file);

// "0.25", "-1", "1.5": the shortest decimal that round-trips through the config.
std::string format_alpha(double a);

}  // namespace rvec::experiment
