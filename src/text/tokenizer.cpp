// BPE tokenizer compatible with Hugging Face tokenizers (see tokenizer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/tokenizer.h"

#include <pcre2.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <cctype>
#include <array>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <shared_mutex>
#include <unordered_map>

#include "core/atomic_output.h"
#include "core/checked_int.h"
#include "core/error.h"

namespace rvec::text {

using json = nlohmann::json;

// ---------------------------------------------------------------- UTF-8 helpers
namespace {

// Length of the well-formed UTF-8 sequence at p (1..4), or 0 if invalid. `consumed`
// gets the length of the maximal valid prefix (>= 1 for an invalid one), `truncated`
// tells whether the sequence was cut short by the end of input while still valid.
size_t utf8_seq(const unsigned char* p, size_t n, size_t& consumed, bool& truncated) {
  truncated = false;
  unsigned char c = p[0];
  if (c < 0x80) {
    consumed = 1;
    return 1;
  }
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    consumed = 1;
    return 0;
  }
  size_t i = 1;
  for (; i < need; ++i) {
    if (i >= n) {
      consumed = i;
      truncated = true;
      return 0;
    }
    unsigned char b = p[i];
    unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      consumed = i;
      return 0;
    }
  }
  consumed = need;
  return need;
}

// Number of trailing bytes that form a valid but incomplete sequence.
size_t utf8_incomplete_tail(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    size_t consumed;
    bool truncated;
    size_t len = utf8_seq(p + i, n - i, consumed, truncated);
    if (len) {
      i += len;
    } else {
      if (truncated) return n - i;
      i += consumed;
    }
  }
  return 0;
}

uint32_t decode_cp(const unsigned char* p, size_t len) {
  switch (len) {
    case 1: return p[0];
    case 2: return (uint32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3: return (uint32_t(p[0] & 0x0F) << 12) | (uint32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    default:
      return (uint32_t(p[0] & 0x07) << 18) | (uint32_t(p[1] & 0x3F) << 12) | (uint32_t(p[2] & 0x3F) << 6) |
             (p[3] & 0x3F);
  }
}

void append_cp(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n.
struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::unordered_map<uint32_t, unsigned char> to_byte;
  ByteMap() {
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? uint32_t(b) : 256 + n++;
      to_byte[to_cp[b]] = static_cast<unsigned char>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// ByteLevel decoder on one token: every char mapped back to its byte, or, if some
// char is outside the byte alphabet, the token's own UTF-8 (as HF does).
std::string byte_level_decode(const std::string& tok) {
  const auto& bm = byte_map();
  std::string out;
  out.reserve(tok.size());
  const auto* p = reinterpret_cast<const unsigned char*>(tok.data());
  size_t i = 0, n = tok.size();
  while (i < n) {
    size_t consumed;
    bool truncated;
    size_t len = utf8_seq(p + i, n - i, consumed, truncated);
    if (!len) return tok;
    auto it = bm.to_byte.find(decode_cp(p + i, len));
    if (it == bm.to_byte.end()) return tok;
    out += char(it->second);
    i += len;
  }
  return out;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

std::string nfc(std::string_view s, const std::string& origin) {
  if (is_ascii(s)) return std::string(s);
  UErrorCode st = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFCInstance(&st);
  if (U_FAILURE(st)) fail("{}: NFC normalizer unavailable: {}", origin, u_errorName(st));
  int32_t len16 = 0;
  st = U_ZERO_ERROR;
  u_strFromUTF8(nullptr, 0, &len16, s.data(), int32_t(s.size()), &st);
  if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st)) fail("{}: NFC: bad UTF-8 ({})", origin, u_errorName(st));
  std::vector<UChar> src(size_t(len16) + 1);
  st = U_ZERO_ERROR;
  u_strFromUTF8(src.data(), len16 + 1, &len16, s.data(), int32_t(s.size()), &st);
  if (U_FAILURE(st)) fail("{}: NFC: bad UTF-8 ({})", origin, u_errorName(st));
  st = U_ZERO_ERROR;
  if (unorm2_isNormalized(norm, src.data(), len16, &st) && U_SUCCESS(st)) return std::string(s);
  st = U_ZERO_ERROR;
  int32_t out_len = unorm2_normalize(norm, src.data(), len16, nullptr, 0, &st);
  std::vector<UChar> dst(size_t(out_len) + 1);
  st = U_ZERO_ERROR;
  out_len = unorm2_normalize(norm, src.data(), len16, dst.data(), out_len + 1, &st);
  if (U_FAILURE(st)) fail("{}: NFC normalization failed ({})", origin, u_errorName(st));
  int32_t len8 = 0;
  st = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &len8, dst.data(), out_len, &st);
  std::string out(size_t(len8) + 1, '\0');
  st = U_ZERO_ERROR;
  u_strToUTF8(out.data(), len8 + 1, &len8, dst.data(), out_len, &st);
  if (U_FAILURE(st)) fail("{}: NFC: UTF-16 to UTF-8 failed ({})", origin, u_errorName(st));
  out.resize(size_t(len8));
  return out;
}

// Oniguruma's \s (used by HF tokenizers) also matches U+0085, which PCRE2's UCP \s
// does not: rewrite \s outside and inside character classes.
std::string onig_to_pcre2(std::string_view pat) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pat.size(); ++i) {
    char c = pat[i];
    if (c == '\\' && i + 1 < pat.size()) {
      char d = pat[i + 1];
      if (d == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (d == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += c;
        out += d;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      if (i + 1 < pat.size() && pat[i + 1] == '^') out += pat[++i];
      if (i + 1 < pat.size() && pat[i + 1] == ']') out += pat[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

struct Pcre2CodeFree {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
using Regex = std::unique_ptr<pcre2_code, Pcre2CodeFree>;

Regex compile_regex(const std::string& pattern, bool literal, const std::string& origin,
                    const char* what = "pre_tokenizer") {
  int err = 0;
  PCRE2_SIZE off = 0;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
  std::string pat = literal ? pattern : onig_to_pcre2(pattern);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), opts, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    fail("{}: {} regex /{}/ does not compile at offset {}: {}", origin, what, pattern, off,
         reinterpret_cast<const char*>(buf));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  return Regex(code);
}

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

bool ascii_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

// Rust's char::is_whitespace (Unicode White_Space), used by the Strip normalizer.
bool unicode_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Byte length of the UTF-8 character at s[i] (1 for an invalid byte; never past the end).
size_t char_len(std::string_view s, size_t i) {
  size_t consumed;
  bool truncated;
  size_t len = utf8_seq(reinterpret_cast<const unsigned char*>(s.data()) + i, s.size() - i, consumed, truncated);
  return len ? len : std::max<size_t>(consumed, 1);
}

// The byte of a byte-fallback token "<0xAB>" as HF's ByteFallback decoder reads it (Rust
// u8::from_str_radix on the two characters after "<0x": hex digits of either case, or a
// '+' and one digit), or -1.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (t[3] == '+') return hex(t[4]);
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

struct MatchDataFree {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataFree>;

// Calls f(start, end) for every non-empty match of re in the valid UTF-8 s, leftmost first,
// non-overlapping; an empty match moves on by one character (HF's regex iteration). `what`
// names the component in errors.
template <class F>
void for_each_match(const pcre2_code* re, std::string_view s, pcre2_match_data* md, const std::string& origin,
                    const char* what, F&& f) {
  size_t off = 0;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  while (off <= s.size()) {
    int rc = pcre2_match(re, subject, s.size(), off, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("{}: {} regex failed with PCRE2 error {}", origin, what, rc);
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t ms = ov[0], me = ov[1];
    if (me <= ms) {
      if (ms >= s.size()) break;
      off = ms + char_len(s, ms);
      continue;
    }
    f(ms, me);
    off = me;
  }
}

// A Replace pattern ({"String": ...} or {"Regex": ...}) and its replacement; every
// non-overlapping match, leftmost first, is replaced (empty regex matches are skipped).
struct Replacer {
  std::string literal;
  Regex re;  // set for a Regex pattern
  std::string content;

  std::string apply(std::string_view s, const std::string& origin) const {
    std::string out;
    if (!re) {
      if (literal.empty()) return std::string(s);
      size_t pos = 0;
      for (size_t hit; (hit = s.find(literal, pos)) != std::string_view::npos; pos = hit + literal.size()) {
        out.append(s.substr(pos, hit - pos));
        out += content;
      }
      out.append(s.substr(pos));
      return out;
    }
    MatchData md(pcre2_match_data_create(2, nullptr));
    if (!md) fail("{}: out of memory for regex match data", origin);
    size_t prev = 0;
    for_each_match(re.get(), s, md.get(), origin, "Replace", [&](size_t ms, size_t me) {
      out.append(s.substr(prev, ms - prev));
      out += content;
      prev = me;
    });
    out.append(s.substr(prev));
    return out;
  }
};

Replacer parse_replace(const json& j, const std::string& origin, const char* what) {
  Replacer r;
  const json& pat = j.contains("pattern") ? j.at("pattern") : json();
  if (pat.is_object() && pat.contains("String")) {
    r.literal = pat.at("String").get<std::string>();
  } else if (pat.is_object() && pat.contains("Regex")) {
    r.re = compile_regex(pat.at("Regex").get<std::string>(), false, origin, what);
  } else {
    fail("{}: {} Replace pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}", origin, what);
  }
  if (!j.contains("content")) fail("{}: {} Replace has no \"content\"", origin, what);
  r.content = j.at("content").get<std::string>();
  return r;
}

// One UTF-8 character from a JSON string (Metaspace replacement, Strip content).
std::string one_char(const json& v, const std::string& origin, const char* what) {
  std::string c = v.get<std::string>();
  if (c.empty() || !utf8_valid(c) || char_len(c, 0) != c.size())
    fail("{}: {} must be a single character, got \"{}\"", origin, what, c);
  return c;
}

}  // namespace

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t i = 0, n = bytes.size();
  while (i < n) {
    size_t consumed;
    bool truncated;
    size_t len = utf8_seq(p + i, n - i, consumed, truncated);
    if (len) {
      out.append(bytes.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += consumed;
    }
  }
  return out;
}

bool utf8_valid(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t i = 0, n = bytes.size();
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t consumed;
    bool truncated;
    size_t len = utf8_seq(p + i, n - i, consumed, truncated);
    if (!len) return false;
    i += len;
  }
  return true;
}

// ---------------------------------------------------------------- the tokenizer
struct AddedToken {
  int32_t id;
  std::string content;
  bool special, lstrip, rstrip, single_word;
};

struct PreTok {
  enum Kind { Split, ByteLevel, Metaspace } kind;
  explicit PreTok(Kind k) : kind(k) {}
  Regex re;               // Split pattern, or the GPT-2 regex for ByteLevel(use_regex)
  bool remove = false;    // Split behavior Removed (else Isolated)
  bool prefix_space = false;
  // Metaspace: spaces become `rep`, which is prepended (always / only to the piece at the
  // start of the input / never) unless already there; split: cut before every `rep`.
  std::string rep;
  enum Scheme { Always, First, Never } scheme = Always;
  bool split = true;
};

struct NormStep {
  enum Kind { NFC, Prepend, Replace, Strip } kind;
  explicit NormStep(Kind k) : kind(k) {}
  std::string prepend;
  Replacer replace;
  bool left = false, right = false;  // Strip
};

// Decoders, applied in order to the list of token strings like HF's decode_chain.
struct DecStep {
  enum Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace } kind;
  explicit DecStep(Kind k) : kind(k) {}
  Replacer replace;
  std::string ch;              // Strip content / Metaspace replacement (one character)
  size_t start = 0, stop = 0;  // Strip
  bool prepend = true;         // Metaspace: prepend_scheme != never (drop `ch` from token 0)
};

struct Tokenizer::Impl {
  std::string origin;
  std::unordered_map<std::string, int32_t> vocab;  // token strings as in the file (incl. added)
  std::vector<std::string> id_tok;
  std::vector<std::string> id_bytes;
  std::vector<uint8_t> present, special;
  std::vector<AddedToken> added;
  std::array<std::vector<size_t>, 256> added_by_byte;  // indices into added, longest first
  std::unordered_map<std::string, int32_t> bytes_to_id;
  std::array<int32_t, 256> byte_id;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, merged id)
  bool ignore_merges = false;
  // byte_mode: a ByteLevel pre-tokenizer, so BPE starts from bytes (byte_id); otherwise
  // (SentencePiece style) from the characters' own tokens in model_vocab, with
  // byte_fallback to the "<0xAB>" tokens (fallback_id) and unk (fused if fuse_unk).
  bool byte_mode = false, byte_fallback = false, fuse_unk = false;
  std::array<int32_t, 256> fallback_id;
  std::unordered_map<std::string, int32_t> model_vocab;  // char mode only
  std::vector<NormStep> norms;
  std::vector<DecStep> decoders;
  bool plain_byte_level = false;  // decoders == [ByteLevel]: decode by concatenating id_bytes
  int32_t unk = -1;
  std::optional<int32_t> bos, eos;
  bool add_bos = false;
  size_t id_limit = 65536;  // ids above this are refused (bounded memory on malformed files)
  std::vector<PreTok> pretoks;

  mutable std::shared_mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;
  static constexpr size_t kCacheMax = 1 << 16, kCacheWordMax = 128;

  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out, pcre2_match_data* md) const;
  std::string normalize(std::string_view text) const;
  std::string token_piece(const std::string& tok) const;
  std::string run_decoders(std::vector<std::string> toks) const;
  void split_regex(const pcre2_code* re, bool remove, std::string_view s, std::vector<std::string_view>& out,
                   pcre2_match_data* md) const;
};

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

const json& need(const json& j, const char* key, const std::string& origin, const char* where) {
  if (!j.is_object() || !j.contains(key)) fail("{}: {} has no \"{}\"", origin, where, key);
  return j.at(key);
}

bool get_bool(const json& j, const char* key, bool dflt) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return dflt;
  return j.at(key).get<bool>();
}

void parse_normalizer(const json& n, Tokenizer::Impl& t) {
  if (n.is_null()) return;
  std::string type = need(n, "type", t.origin, "normalizer").get<std::string>();
  if (type == "NFC") {
    t.norms.emplace_back(NormStep::NFC);
  } else if (type == "Prepend") {
    t.norms.emplace_back(NormStep::Prepend).prepend = need(n, "prepend", t.origin, "Prepend normalizer").get<std::string>();
  } else if (type == "Replace") {
    t.norms.emplace_back(NormStep::Replace).replace = parse_replace(n, t.origin, "normalizer");
  } else if (type == "Strip") {
    NormStep st(NormStep::Strip);
    st.left = get_bool(n, "strip_left", false);
    st.right = get_bool(n, "strip_right", false);
    t.norms.push_back(std::move(st));
  } else if (type == "Sequence") {
    for (const auto& sub : need(n, "normalizers", t.origin, "normalizer Sequence")) parse_normalizer(sub, t);
  } else {
    fail("{}: unsupported normalizer \"{}\" (supported: NFC, Prepend, Replace, Strip, Sequence)", t.origin, type);
  }
}

void parse_pretokenizer(const json& p, Tokenizer::Impl& t) {
  if (p.is_null()) return;
  std::string type = need(p, "type", t.origin, "pre_tokenizer").get<std::string>();
  if (type == "Sequence") {
    for (const auto& sub : need(p, "pretokenizers", t.origin, "pre_tokenizer Sequence")) parse_pretokenizer(sub, t);
  } else if (type == "Split") {
    const json& pat = need(p, "pattern", t.origin, "Split pre_tokenizer");
    PreTok pt(PreTok::Split);
    if (pat.is_object() && pat.contains("Regex")) {
      pt.re = compile_regex(pat.at("Regex").get<std::string>(), false, t.origin);
    } else if (pat.is_object() && pat.contains("String")) {
      pt.re = compile_regex(pat.at("String").get<std::string>(), true, t.origin);
    } else {
      fail("{}: Split pre_tokenizer pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}", t.origin);
    }
    std::string behavior = need(p, "behavior", t.origin, "Split pre_tokenizer").get<std::string>();
    if (behavior == "Removed") {
      pt.remove = true;
    } else if (behavior != "Isolated") {
      fail("{}: unsupported Split behavior \"{}\" (supported: Isolated, Removed)", t.origin, behavior);
    }
    if (get_bool(p, "invert", false)) fail("{}: Split pre_tokenizer with invert=true is not supported", t.origin);
    t.pretoks.push_back(std::move(pt));
  } else if (type == "ByteLevel") {
    PreTok pt(PreTok::ByteLevel);
    pt.prefix_space = get_bool(p, "add_prefix_space", true);
    if (get_bool(p, "use_regex", true)) pt.re = compile_regex(kGpt2Pattern, false, t.origin);
    t.pretoks.push_back(std::move(pt));
  } else if (type == "Metaspace") {
    PreTok pt(PreTok::Metaspace);
    pt.rep = one_char(need(p, "replacement", t.origin, "Metaspace pre_tokenizer"), t.origin, "Metaspace replacement");
    std::string scheme = p.contains("prepend_scheme") ? p.at("prepend_scheme").get<std::string>() : "always";
    if (scheme == "always") {
      pt.scheme = PreTok::Always;
    } else if (scheme == "first") {
      pt.scheme = PreTok::First;
    } else if (scheme == "never") {
      pt.scheme = PreTok::Never;
    } else {
      fail("{}: unsupported Metaspace prepend_scheme \"{}\" (supported: always, first, never)", t.origin, scheme);
    }
    // Old configs: add_prefix_space false means never (HF refuses it with another scheme).
    if (!get_bool(p, "add_prefix_space", true)) {
      if (pt.scheme != PreTok::Never)
        fail("{}: Metaspace add_prefix_space=false does not match prepend_scheme \"{}\"", t.origin, scheme);
    }
    pt.split = get_bool(p, "split", true);
    t.pretoks.push_back(std::move(pt));
  } else {
    fail("{}: unsupported pre_tokenizer \"{}\" (supported: Sequence, Split, ByteLevel, Metaspace)", t.origin, type);
  }
}

void parse_decoder(const json& d, Tokenizer::Impl& t) {
  const std::string& origin = t.origin;
  if (d.is_null()) fail("{}: tokenizer without a decoder is not supported", origin);
  std::string type = need(d, "type", origin, "decoder").get<std::string>();
  if (type == "Sequence") {
    for (const auto& sub : need(d, "decoders", origin, "decoder Sequence")) parse_decoder(sub, t);
  } else if (type == "ByteLevel") {
    t.decoders.emplace_back(DecStep::ByteLevel);
  } else if (type == "ByteFallback") {
    t.decoders.emplace_back(DecStep::ByteFallback);
  } else if (type == "Fuse") {
    t.decoders.emplace_back(DecStep::Fuse);
  } else if (type == "Replace") {
    t.decoders.emplace_back(DecStep::Replace).replace = parse_replace(d, origin, "decoder");
  } else if (type == "Strip") {
    DecStep st(DecStep::Strip);
    st.ch = one_char(need(d, "content", origin, "Strip decoder"), origin, "Strip decoder content");
    st.start = need(d, "start", origin, "Strip decoder").get<size_t>();
    st.stop = need(d, "stop", origin, "Strip decoder").get<size_t>();
    t.decoders.push_back(std::move(st));
  } else if (type == "Metaspace") {
    DecStep st(DecStep::Metaspace);
    st.ch = one_char(need(d, "replacement", origin, "Metaspace decoder"), origin, "Metaspace replacement");
    std::string scheme = d.contains("prepend_scheme") ? d.at("prepend_scheme").get<std::string>() : "always";
    if (scheme != "always" && scheme != "first" && scheme != "never")
      fail("{}: unsupported Metaspace prepend_scheme \"{}\" (supported: always, first, never)", origin, scheme);
    if (!get_bool(d, "add_prefix_space", true) && scheme != "never")
      fail("{}: Metaspace add_prefix_space=false does not match prepend_scheme \"{}\"", origin, scheme);
    st.prepend = scheme != "never";
    t.decoders.push_back(std::move(st));
  } else {
    fail("{}: unsupported decoder \"{}\" (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, "
         "Sequence)",
         origin, type);
  }
}

// A token id from the file, checked before narrowing to int32 (2^40 must not become 0).
int32_t token_id(const json& v, const std::string& origin, const std::string& token) {
  if (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(INT32_MAX)) return int32_t(v.get<uint64_t>());
  return int32_t(json_int_in_range(v, 0, INT32_MAX, fmt::format("{}: token id of \"{}\"", origin, token)));
}

void set_token(Tokenizer::Impl& t, int32_t id, const std::string& s) {
  if (id < 0) fail("{}: negative token id {} for \"{}\"", t.origin, id, s);
  if (size_t(id) >= t.id_tok.size()) {
    // Ids must be dense-ish; refuse absurd ids so a malformed file cannot exhaust memory.
    if (size_t(id) > t.id_limit) fail("{}: token id {} for \"{}\" is out of range", t.origin, id, s);
    t.id_tok.resize(size_t(id) + 1);
    t.present.resize(size_t(id) + 1);
    t.special.resize(size_t(id) + 1);
  }
  t.id_tok[size_t(id)] = s;
  t.present[size_t(id)] = 1;
  t.vocab[s] = id;
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  Tokenizer tok = from_json_string(read_file(tokenizer_json), tokenizer_json.string());
  auto cfg_path = tokenizer_json.parent_path() / "tokenizer_config.json";
  if (!std::filesystem::exists(cfg_path)) return tok;
  json cfg;
  try {
    cfg = json::parse(read_file(cfg_path));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", cfg_path.string(), e.what());
  }
  if (!cfg.is_object()) return tok;
  // The shared state is still private to `tok`: fill in the special-token facts.
  auto& impl = const_cast<Impl&>(*tok.impl_);
  auto token_id = [&](const char* key) -> std::optional<int32_t> {
    if (!cfg.contains(key)) return std::nullopt;
    const json& v = cfg.at(key);
    std::string s;
    if (v.is_string()) {
      s = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
      s = v.at("content").get<std::string>();
    } else {
      return std::nullopt;
    }
    auto it = impl.vocab.find(s);
    if (it == impl.vocab.end()) return std::nullopt;  // not a token of this vocab: ignored
    return it->second;
  };
  if (auto b = token_id("bos_token")) impl.bos = b;
  if (auto e = token_id("eos_token")) impl.eos = e;
  if (cfg.contains("add_bos_token") && cfg.at("add_bos_token").is_boolean())
    impl.add_bos = cfg.at("add_bos_token").get<bool>() && impl.bos.has_value();
  return tok;
}

Tokenizer Tokenizer::from_model_dir(const std::filesystem::path& dir) {
  auto p = dir / "tokenizer.json";
  if (!std::filesystem::exists(p)) fail("{}: no tokenizer.json in the model directory", dir.string());
  return from_file(p);
}

Tokenizer Tokenizer::from_json_string(std::string_view text, const std::string& origin) {
  auto t = std::make_shared<Impl>();
  t->origin = origin;
  try {
    json j = json::parse(text);
    if (!j.is_object()) fail("{}: tokenizer.json is not a JSON object", origin);
    const json& model = need(j, "model", origin, "tokenizer.json");
    if (model.contains("type") && !model.at("type").is_null() && model.at("type").get<std::string>() != "BPE")
      fail("{}: unsupported model type \"{}\" (only BPE)", origin, model.at("type").get<std::string>());
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(k) && !model.at(k).is_null() && !model.at(k).get<std::string>().empty())
        fail("{}: BPE with {} is not supported", origin, k);
    t->byte_fallback = get_bool(model, "byte_fallback", false);
    t->fuse_unk = get_bool(model, "fuse_unk", false);
    t->ignore_merges = get_bool(model, "ignore_merges", false);
    parse_normalizer(j.value("normalizer", json()), *t);
    parse_pretokenizer(j.value("pre_tokenizer", json()), *t);
    parse_decoder(j.value("decoder", json()), *t);
    for (const auto& p : t->pretoks) t->byte_mode |= p.kind == PreTok::ByteLevel;
    t->plain_byte_level = t->decoders.size() == 1 && t->decoders[0].kind == DecStep::ByteLevel;

    const json& vocab = need(model, "vocab", origin, "model");
    if (!vocab.is_object()) fail("{}: model.vocab is not an object", origin);
    t->vocab.reserve(vocab.size() * 2);
    size_t n_added = j.contains("added_tokens") && j.at("added_tokens").is_array() ? j.at("added_tokens").size() : 0;
    t->id_limit = 2 * (vocab.size() + n_added) + 65536;
    for (const auto& [tok, id] : vocab.items()) set_token(*t, token_id(id, origin, tok), tok);
    size_t n_model = t->id_tok.size();

    // Byte-level view of the model vocab (byte mode), or the model vocab itself and its
    // byte-fallback tokens, spelt exactly "<0xAB>" as HF looks them up (char mode).
    t->byte_id.fill(-1);
    t->fallback_id.fill(-1);
    if (!t->byte_mode) {
      t->model_vocab.reserve(vocab.size() * 2);
      for (const auto& [tok, id] : vocab.items()) {
        int32_t i = token_id(id, origin, tok);
        t->model_vocab[tok] = i;
        int b = parse_byte_token(tok);
        if (b >= 0 && tok == fmt::format("<0x{:02X}>", b)) t->fallback_id[size_t(b)] = i;
      }
    }
    for (size_t id = 0; id < n_model && t->byte_mode; ++id) {
      if (!t->present[id]) continue;
      std::string b = byte_level_decode(t->id_tok[id]);
      if (b.size() == 1) {
        const auto& bm = byte_map();
        // only a genuine byte-level char (not a raw ASCII token outside the alphabet)
        std::string enc;
        append_cp(enc, bm.to_cp[static_cast<unsigned char>(b[0])]);
        if (enc == t->id_tok[id]) t->byte_id[static_cast<unsigned char>(b[0])] = int32_t(id);
      }
      t->bytes_to_id.emplace(std::move(b), int32_t(id));
    }
    if (model.contains("unk_token") && !model.at("unk_token").is_null()) {
      auto it = t->vocab.find(model.at("unk_token").get<std::string>());
      if (it == t->vocab.end()) fail("{}: unk_token is not in the vocab", origin);
      t->unk = it->second;
    }

    const json& merges = need(model, "merges", origin, "model");
    if (!merges.is_array()) fail("{}: model.merges is not an array", origin);
    t->merges.reserve(merges.size() * 2);
    int32_t rank = 0;
    for (const auto& m : merges) {
      std::string a, b;
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos) fail("{}: merge {} \"{}\" is not \"a b\"", origin, rank, s);
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2) {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      } else {
        fail("{}: merge {} is neither \"a b\" nor [a, b]", origin, rank);
      }
      auto ia = t->vocab.find(a), ib = t->vocab.find(b), iab = t->vocab.find(a + b);
      if (ia == t->vocab.end() || ib == t->vocab.end() || iab == t->vocab.end())
        fail("{}: merge {} (\"{}\", \"{}\") uses a token that is not in the vocab", origin, rank, a, b);
      t->merges.insert_or_assign(pair_key(ia->second, ib->second), std::make_pair(rank, iab->second));
      ++rank;
    }

    if (j.contains("added_tokens") && !j.at("added_tokens").is_null()) {
      for (const auto& a : j.at("added_tokens")) {
        AddedToken at;
        at.content = need(a, "content", origin, "added token").get<std::string>();
        at.id = token_id(need(a, "id", origin, "added token"), origin, at.content);
        if (at.content.empty()) fail("{}: added token {} has empty content", origin, at.id);
        at.special = get_bool(a, "special", false);
        at.lstrip = get_bool(a, "lstrip", false);
        at.rstrip = get_bool(a, "rstrip", false);
        at.single_word = get_bool(a, "single_word", false);
        set_token(*t, at.id, at.content);
        t->added.push_back(std::move(at));
      }
    }
    for (const auto& a : t->added) t->special[size_t(a.id)] = a.special ? 1 : 0;
    for (size_t i = 0; i < t->added.size(); ++i)
      t->added_by_byte[static_cast<unsigned char>(t->added[i].content[0])].push_back(i);
    for (auto& v : t->added_by_byte)
      std::stable_sort(v.begin(), v.end(),
                       [&](size_t x, size_t y) { return t->added[x].content.size() > t->added[y].content.size(); });

    t->id_bytes.resize(t->id_tok.size());
    for (size_t id = 0; id < t->id_tok.size(); ++id)
      if (t->present[id]) t->id_bytes[id] = t->token_piece(t->id_tok[id]);
    // BOS from a TemplateProcessing post-processor: {"single": [{"SpecialToken": {"id": "<bos>"}}, ...]}.
    std::function<void(const json&)> post = [&](const json& pp) {
      if (!pp.is_object()) return;
      std::string type = pp.value("type", "");
      if (type == "Sequence" && pp.contains("processors") && pp.at("processors").is_array()) {
        for (const auto& sub : pp.at("processors")) post(sub);
      } else if (type == "TemplateProcessing" && pp.contains("single") && pp.at("single").is_array() &&
                 !pp.at("single").empty()) {
        const json& first = pp.at("single").at(0);
        if (first.is_object() && first.contains("SpecialToken")) {
          auto it = t->vocab.find(first.at("SpecialToken").at("id").get<std::string>());
          if (it != t->vocab.end()) {
            t->bos = it->second;
            t->add_bos = true;
          }
        }
      }
    };
    post(j.value("post_processor", json()));
  } catch (const json::exception& e) {
    fail("{}: invalid tokenizer.json: {}", origin, e.what());
  }
  return Tokenizer(std::move(t));
}

void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    const auto& whole = byte_mode ? bytes_to_id : model_vocab;
    auto it = whole.find(std::string(word));
    if (it != whole.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheWordMax;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::shared_lock lk(cache_mu);
    auto it = cache.find(key);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  struct Sym {
    int32_t id, prev, next;
    bool alive;
  };
  std::vector<Sym> sym;
  sym.reserve(word.size());
  auto add = [&](int32_t id) {
    int32_t i = int32_t(sym.size());
    sym.push_back({id, i - 1, i + 1, true});
  };
  if (byte_mode) {
    for (unsigned char c : word) {
      int32_t id = byte_id[c];
      if (id < 0) id = unk;
      if (id >= 0) add(id);  // HF drops chars with no token when there is no unk_token
    }
  } else {
    // HF BPE::merge_word: each character's token; else its bytes' "<0xAB>" tokens (all
    // of them or none); else unk, consecutive unks fused when fuse_unk. A pending unk is
    // only flushed by a known character or the end (byte-fallback tokens go before it).
    int32_t pending_unk = -1;
    std::string ch;
    for (size_t i = 0; i < word.size();) {
      size_t len = char_len(word, i);
      ch.assign(word.substr(i, len));
      i += len;
      auto it = model_vocab.find(ch);
      if (it != model_vocab.end()) {
        if (pending_unk >= 0) add(pending_unk);
        pending_unk = -1;
        add(it->second);
        continue;
      }
      if (byte_fallback) {
        bool all = true;
        for (unsigned char c : ch) all &= fallback_id[c] >= 0;
        if (all) {
          for (unsigned char c : ch) add(fallback_id[c]);
          continue;
        }
      }
      if (unk >= 0) {
        if (pending_unk >= 0 && !fuse_unk) add(pending_unk);
        pending_unk = unk;
      }
    }
    if (pending_unk >= 0) add(pending_unk);
  }
  if (!sym.empty()) sym.back().next = -1;
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto try_push = [&](int32_t pos) {
    if (pos < 0) return;
    int32_t nx = sym[size_t(pos)].next;
    if (nx < 0) return;
    auto it = merges.find(pair_key(sym[size_t(pos)].id, sym[size_t(nx)].id));
    if (it != merges.end()) heap.push({it->second.first, pos, it->second.second});
  };
  for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) try_push(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& s = sym[size_t(c.pos)];
    if (!s.alive || s.next < 0) continue;
    Sym& r = sym[size_t(s.next)];
    auto it = merges.find(pair_key(s.id, r.id));
    if (it == merges.end() || it->second.second != c.new_id) continue;
    s.id = c.new_id;
    r.alive = false;
    s.next = r.next;
    if (s.next >= 0) sym[size_t(s.next)].prev = c.pos;
    try_push(s.prev);
    try_push(c.pos);
  }
  size_t start = out.size();
  for (const auto& s : sym)
    if (s.alive) out.push_back(s.id);
  if (cacheable) {
    std::vector<int32_t> ids(out.begin() + std::ptrdiff_t(start), out.end());
    std::unique_lock lk(cache_mu);
    if (cache.size() >= kCacheMax) cache.clear();
    cache.emplace(std::move(key), std::move(ids));
  }
}

void Tokenizer::Impl::split_regex(const pcre2_code* re, bool remove, std::string_view s,
                                  std::vector<std::string_view>& out, pcre2_match_data* md) const {
  size_t prev = 0;
  for_each_match(re, s, md, origin, "pre_tokenizer", [&](size_t ms, size_t me) {
    if (ms > prev) out.push_back(s.substr(prev, ms - prev));
    if (!remove) out.push_back(s.substr(ms, me - ms));
    prev = me;
  });
  if (prev < s.size()) out.push_back(s.substr(prev));
}

std::string Tokenizer::Impl::normalize(std::string_view text) const {
  std::string cur(text);
  for (const auto& n : norms) {
    switch (n.kind) {
      case NormStep::NFC:
        cur = rvec::text::nfc(cur, origin);
        break;
      case NormStep::Prepend:
        if (!cur.empty()) cur.insert(0, n.prepend);  // HF prepends only to non-empty text
        break;
      case NormStep::Replace:
        cur = n.replace.apply(cur, origin);
        break;
      case NormStep::Strip: {
        size_t b = 0, e = cur.size();
        const auto* p = reinterpret_cast<const unsigned char*>(cur.data());
        while (n.left && b < e) {
          size_t len = char_len(cur, b);
          if (!unicode_space(decode_cp(p + b, len))) break;
          b += len;
        }
        while (n.right && e > b) {
          size_t s = e - 1;
          while (s > b && (p[s] & 0xC0) == 0x80) --s;
          if (!unicode_space(decode_cp(p + s, e - s))) break;
          e = s;
        }
        cur = cur.substr(b, e - b);
        break;
      }
    }
  }
  return cur;
}

void Tokenizer::Impl::encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out,
                                  pcre2_match_data* md) const {
  if (text.empty()) return;
  std::string normalized;
  if (!norms.empty()) {
    normalized = normalize(text);
    text = normalized;
  }
  // at0: the piece starts at offset 0 of the original input (Metaspace prepend_scheme first).
  struct Piece {
    std::string_view s;
    bool at0;
  };
  std::deque<std::string> storage;  // pieces rewritten by a pre-tokenizer
  std::vector<Piece> cur{{text, at_start}}, next;
  std::vector<std::string_view> parts;
  for (const auto& pt : pretoks) {
    next.clear();
    for (Piece piece : cur) {
      if (pt.kind == PreTok::Metaspace) {
        std::string& m = storage.emplace_back();
        for (char c : piece.s) {
          if (c == ' ') {
            m += pt.rep;
          } else {
            m += c;
          }
        }
        bool prepend = pt.scheme == PreTok::Always || (pt.scheme == PreTok::First && piece.at0);
        if (prepend && m.compare(0, pt.rep.size(), pt.rep) != 0) m.insert(0, pt.rep);
        std::string_view v = m;
        if (!pt.split) {
          if (!v.empty()) next.push_back({v, piece.at0});
          continue;
        }
        // Split MergedWithNext: every replacement char starts a new piece.
        size_t from = 0;
        for (size_t hit = v.find(pt.rep, 1); hit != std::string_view::npos; hit = v.find(pt.rep, hit + 1)) {
          next.push_back({v.substr(from, hit - from), piece.at0 && from == 0});
          from = hit;
        }
        if (from < v.size()) next.push_back({v.substr(from), piece.at0 && from == 0});
        continue;
      }
      const char* begin = piece.s.data();
      if (pt.kind == PreTok::ByteLevel && pt.prefix_space && !piece.s.empty() && piece.s[0] != ' ') {
        std::string& sp = storage.emplace_back(size_t(1), ' ');
        sp.append(piece.s.data(), piece.s.size());
        piece.s = sp;
        begin = sp.data();
      }
      if (pt.re) {
        parts.clear();
        split_regex(pt.re.get(), pt.remove, piece.s, parts, md);
        for (std::string_view p : parts) next.push_back({p, piece.at0 && p.data() == begin});
      } else if (!piece.s.empty()) {
        next.push_back(piece);
      }
    }
    std::swap(cur, next);
  }
  for (const Piece& piece : cur) bpe(piece.s, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  const Impl& t = *impl_;
  std::string fixed;
  if (!utf8_valid(text)) {
    fixed = utf8_lossy(text);
    text = fixed;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  struct MdFree {
    void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
  };
  std::unique_ptr<pcre2_match_data, MdFree> md(pcre2_match_data_create(4, nullptr));
  if (!md) fail("{}: out of memory for regex match data", t.origin);

  size_t seg = 0, i = 0, n = text.size();
  while (i < n) {
    const auto& cands = t.added_by_byte[static_cast<unsigned char>(text[i])];
    const AddedToken* hit = nullptr;
    for (size_t ci : cands) {
      const AddedToken& a = t.added[ci];
      if (a.special && !parse_special) continue;
      if (text.compare(i, a.content.size(), a.content) != 0) continue;
      if (a.single_word) {
        size_t e = i + a.content.size();
        if ((i > 0 && word_byte(static_cast<unsigned char>(text[i - 1]))) ||
            (e < n && word_byte(static_cast<unsigned char>(text[e]))))
          continue;
      }
      hit = &a;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t start = i, end = i + hit->content.size();
    if (hit->lstrip)
      while (start > seg && ascii_space(static_cast<unsigned char>(text[start - 1]))) --start;
    if (hit->rstrip)
      while (end < n && ascii_space(static_cast<unsigned char>(text[end]))) ++end;
    t.encode_text(text.substr(seg, start - seg), seg == 0, out, md.get());
    out.push_back(hit->id);
    seg = i = end;
  }
  t.encode_text(text.substr(seg), seg == 0, out, md.get());
  return out;
}

// The bytes one token stands for on its own: the per-token decoders (ByteLevel, Replace,
// Metaspace as for a token after the first) and a byte-fallback token's byte; Fuse and
// Strip act on whole texts and are left out.
std::string Tokenizer::Impl::token_piece(const std::string& tok) const {
  std::string s = tok;
  for (const auto& d : decoders) {
    switch (d.kind) {
      case DecStep::ByteLevel:
        s = byte_level_decode(s);
        break;
      case DecStep::Replace:
        s = d.replace.apply(s, origin);
        break;
      case DecStep::ByteFallback:
        if (int b = parse_byte_token(s); b >= 0) s.assign(1, char(b));
        break;
      case DecStep::Metaspace: {
        Replacer r;
        r.literal = d.ch;
        r.content = " ";
        s = r.apply(s, origin);
        break;
      }
      case DecStep::Fuse:
      case DecStep::Strip:
        break;
    }
  }
  return s;
}

// HF's Decoder::decode_chain for each step in order, then the pieces joined.
std::string Tokenizer::Impl::run_decoders(std::vector<std::string> toks) const {
  const std::string kRepl = "\xEF\xBF\xBD";
  for (const auto& d : decoders) {
    switch (d.kind) {
      case DecStep::ByteLevel: {
        std::string bytes;
        for (const auto& tk : toks) bytes += byte_level_decode(tk);
        toks.assign(1, utf8_lossy(bytes));
        break;
      }
      case DecStep::Replace:
        for (auto& tk : toks) tk = d.replace.apply(tk, origin);
        break;
      case DecStep::ByteFallback: {
        // Runs of "<0xAB>" tokens become their bytes if those are valid UTF-8, else one
        // U+FFFD per byte.
        std::vector<std::string> res;
        std::string run;
        size_t run_len = 0;
        auto flush = [&] {
          if (!run_len) return;
          if (utf8_valid(run)) {
            res.push_back(run);
          } else {
            for (size_t k = 0; k < run_len; ++k) res.push_back(kRepl);
          }
          run.clear();
          run_len = 0;
        };
        for (auto& tk : toks) {
          int b = parse_byte_token(tk);
          if (b >= 0) {
            run += char(b);
            ++run_len;
          } else {
            flush();
            res.push_back(std::move(tk));
          }
        }
        flush();
        toks = std::move(res);
        break;
      }
      case DecStep::Fuse: {
        std::string all;
        for (const auto& tk : toks) all += tk;
        toks.assign(1, std::move(all));
        break;
      }
      case DecStep::Strip:
        for (auto& tk : toks) {
          std::vector<size_t> pos;  // character starts, then the end
          for (size_t i = 0; i < tk.size(); i += char_len(tk, i)) pos.push_back(i);
          size_t nch = pos.size();
          pos.push_back(tk.size());
          auto is_c = [&](size_t k) { return tk.compare(pos[k], pos[k + 1] - pos[k], d.ch) == 0; };
          size_t a = 0, z = nch;
          while (a < std::min(d.start, nch) && is_c(a)) ++a;
          for (size_t k = 0; k < d.stop && z > a && is_c(z - 1); ++k) --z;
          tk = tk.substr(pos[a], pos[z] - pos[a]);
        }
        break;
      case DecStep::Metaspace: {
        Replacer r;
        r.literal = d.ch;
        for (size_t i = 0; i < toks.size(); ++i) {
          r.content = i == 0 && d.prepend ? "" : " ";
          toks[i] = r.apply(toks[i], origin);
        }
        break;
      }
    }
  }
  std::string out;
  for (const auto& tk : toks) out += tk;
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& t = *impl_;
  if (t.plain_byte_level) {
    std::string bytes;
    for (int32_t id : ids) {
      if (id < 0 || size_t(id) >= t.id_tok.size() || !t.present[size_t(id)]) continue;
      if (skip_special && t.special[size_t(id)]) continue;
      bytes += t.id_bytes[size_t(id)];
    }
    return utf8_lossy(bytes);
  }
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= t.id_tok.size() || !t.present[size_t(id)]) continue;
    if (skip_special && t.special[size_t(id)]) continue;
    toks.push_back(t.id_tok[size_t(id)]);
  }
  return t.run_decoders(std::move(toks));
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_tok.size()) return {};
  return impl_->id_tok[size_t(id)];
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }

size_t Tokenizer::vocab_size() const { return impl_->id_tok.size(); }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[size_t(id)];
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_bytes.size()) return {};
  return impl_->id_bytes[size_t(id)];
}

std::vector<int32_t> Tokenizer::special_ids() const {
  std::vector<int32_t> out;
  for (const auto& a : impl_->added)
    if (a.special) out.push_back(a.id);
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------- streaming
StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : tok_(&tok), skip_special_(skip_special) {}

// Like HF's DecodeStream: the window ids_ holds the tokens last emitted (ctx_ of them, whose
// text was prefix_) and the pending ones; the new text is decode(window) past prefix_, so
// whole-text decoders (Strip, Metaspace's first token) act as they do in decode(). Text is
// held back while the window's bytes end in an incomplete UTF-8 character.
std::string StreamDecoder::push(int32_t id) {
  const auto& t = *tok_->impl_;
  if (id < 0 || size_t(id) >= t.present.size() || !t.present[size_t(id)]) return {};
  if (skip_special_ && t.special[size_t(id)]) return {};
  ids_.push_back(id);
  std::string bytes;
  for (int32_t i : ids_) bytes += t.id_bytes[size_t(i)];
  if (utf8_incomplete_tail(bytes) > 0) return {};
  return emit(false);
}

std::string StreamDecoder::emit(bool force) {
  const auto& t = *tok_->impl_;
  if (ids_.size() == ctx_) return {};
  std::string text = tok_->decode(ids_, skip_special_);
  std::string out;
  if (!force && text.size() <= prefix_.size()) return {};  // nothing new yet
  if (text.size() >= prefix_.size() && text.compare(0, prefix_.size(), prefix_) == 0) {
    out = text.substr(prefix_.size());
  } else {
    // The window's text does not extend what was emitted (a byte-fallback run that turned
    // invalid, which encode() never produces): the pending tokens' own bytes.
    std::string bytes;
    for (size_t k = ctx_; k < ids_.size(); ++k) bytes += t.id_bytes[size_t(ids_[k])];
    out = utf8_lossy(bytes);
  }
  ids_.erase(ids_.begin(), ids_.begin() + std::ptrdiff_t(ctx_));
  ctx_ = ids_.size();
  prefix_ = tok_->decode(ids_, skip_special_);
  return out;
}

std::string StreamDecoder::flush() { return emit(true); }

}  // namespace rvec::text
