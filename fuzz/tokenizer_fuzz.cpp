// libFuzzer target for the text module. The first input byte picks the mode:
//   0: encode the rest with a small committed byte-level BPE tokenizer (Qwen2.5 cut to
//      1024 ids), check decode and StreamDecoder agree and re-encoding is stable;
//   1: parse the rest as a tokenizer.json (must load or throw rvec::Error, never crash),
//      then encode, decode and stream-decode a fixed string with it;
//   2: parse and render the rest as a chat template.
#include "core/build_info.h"
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/error.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace {
const rvec::text::Tokenizer& tiny() {
  static const auto t = rvec::text::Tokenizer::from_file(std::string(RVEC_SOURCE_DIR) +
                                                         "/tests/data/tokenizers/tiny1024/tokenizer.json");
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0) {
    const auto& t = tiny();
    auto ids = t.encode(rest, (data[0] & 4) != 0);
    std::string dec = t.decode(ids);
    rvec::text::StreamDecoder sd(t);
    std::string streamed;
    for (int32_t id : ids) streamed += sd.push(id);
    streamed += sd.flush();
    if (streamed != dec) std::abort();
    if (!rvec::text::utf8_valid(dec)) std::abort();
    // Decoded text is normalized UTF-8: encoding it again gives the same text back.
    if (t.decode(t.encode(dec, (data[0] & 4) != 0)) != dec) std::abort();
  } else if (mode == 1) {
    try {
      auto t = rvec::text::Tokenizer::from_json_string(rest, "fuzz");
      auto ids = t.encode("Hello, world! 123 <|im_start|> é \xF0\x9F\x98\x80  x\n");
      (void)t.decode(ids);
      // Streaming decode (byte-fallback runs, decoder sequences of the fuzzed config) must
      // not crash and must emit valid UTF-8.
      rvec::text::StreamDecoder sd(t);
      std::string streamed;
      for (int32_t id : ids) streamed += sd.push(id);
      streamed += sd.flush();
      if (!rvec::text::utf8_valid(streamed)) std::abort();
    } catch (const rvec::Error&) {
    }
  } else {
    try {
      auto t = rvec::text::ChatTemplate::from_string(std::string(rest), "<s>", "</s>");
      (void)t.render({{"system", "s"}, {"user", "u"}, {"assistant", "a"}}, true);
    } catch (const rvec::Error&) {
    }
  }
  return 0;
}
