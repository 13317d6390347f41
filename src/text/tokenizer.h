// BPE tokenizer that reads Hugging Face `tokenizer.json` files and reproduces HF
// tokenizers' ids exactly, for byte-level BPE (Qwen2/Qwen2.5, Llama-3, GPT-2 style) and
// SentencePiece-style BPE with byte fallback (Llama-2, Mistral-7B, TinyLlama):
//   added tokens (matched first, leftmost-longest; lstrip/rstrip/single_word honoured)
//   -> normalizer (NFC | Prepend | Replace(String|Regex) | Strip | Sequence of those)
//   -> pre-tokenizer (none | Split(regex|string, Isolated|Removed) | ByteLevel(use_regex,
//      add_prefix_space) | Metaspace(replacement, prepend_scheme, split) | Sequence)
//   -> BPE by merge rank (ignore_merges; byte_fallback to "<0xAB>" tokens; unk_token and
//      fuse_unk) with a per-word cache. With a ByteLevel pre-tokenizer BPE starts from
//      bytes, otherwise from the characters' own tokens.
// Decoding runs HF's decoders in order (ByteLevel, Replace, ByteFallback, Fuse, Strip,
// Metaspace, Sequence); invalid UTF-8 becomes U+FFFD as HF does. Unsupported components
// raise rvec::Error naming the file and the component.
// Invalid UTF-8 given to encode() is replaced by U+FFFD first (HF only accepts valid text).
// A Tokenizer is cheap to copy (shared immutable state); encode/decode are thread-safe.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rvec::text {

class Tokenizer {
 public:
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  static Tokenizer from_model_dir(const std::filesystem::path& dir);  // dir/tokenizer.json
  // `origin` names the source in error messages.
  static Tokenizer from_json_string(std::string_view json, const std::string& origin);

  // No BOS/EOS added (the post-processor is not applied); callers add bos_id() if needed.
  // parse_special=false: special added tokens are encoded as plain text.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // "" for an unknown id
  size_t vocab_size() const;                  // max id + 1 (vocab and added tokens)
  bool is_special(int32_t id) const;

  // BOS/EOS from tokenizer_config.json next to the tokenizer.json (bos_token, eos_token,
  // add_bos_token) or, for BOS, a TemplateProcessing post-processor that starts with a
  // special token (Llama-3). add_bos(): whether callers should prepend bos_id().
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool add_bos() const;

  // The raw bytes a token stands for on its own (ByteLevel-decoded, or a byte-fallback
  // token's byte, or the text with the Replace/Metaspace decoders applied); used by
  // StreamDecoder.
  std::string token_bytes(int32_t id) const;
  // The token ids of special added tokens, in id order.
  std::vector<int32_t> special_ids() const;

  struct Impl;

 private:
  friend class StreamDecoder;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Incremental detokenizer: feed ids one by one, get only complete UTF-8 text (never
// half a character). The concatenation of all push() results and flush() equals
// Tokenizer::decode of the same ids (decoders such as Strip act on the start of the
// whole text only). One exception: a run of byte-fallback tokens that is not valid UTF-8
// as a whole decodes to one U+FFFD per byte in decode() (HF), while the stream has
// already emitted the run's complete characters; encode() never produces such runs.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();  // whatever is pending (an incomplete character becomes U+FFFD)

 private:
  std::string emit(bool force);
  const Tokenizer* tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // the tokens last emitted (ctx_ of them), then the pending ones
  size_t ctx_ = 0;
  std::string prefix_;        // decode of the first ctx_ tokens of ids_
};

// UTF-8 helpers shared with the chat templates and the CLI.
// Replaces each maximal invalid subsequence by U+FFFD (Rust from_utf8_lossy semantics).
std::string utf8_lossy(std::string_view bytes);
bool utf8_valid(std::string_view bytes);

}  // namespace rvec::text
