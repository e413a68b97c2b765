// Text helpers for output that carries untrusted or arbitrary bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ctrust {

// `raw` with every byte for which `keep` is false written as \xNN (lowercase hex). The
// one escaping rule behind error messages, terminal output and the image manifest.
std::string escape_bytes_if(std::string_view raw, bool (*keep)(unsigned char));

// `s` made safe to print on a terminal or in a log line: bytes outside printable ASCII,
// and backslash, become \xNN, and the result is cut at `max` input bytes with "..."
// appended. Untrusted input quoted in an error message always goes through this, so that
// a hostile log or policy cannot move the cursor, rewrite the screen or forge log lines.
std::string printable(std::string_view s, std::size_t max = 64);

// Takes the first line off `text` (up to, not including, a '\n'; all of it when there is
// none) and returns it: `while (!text.empty()) { auto line = next_line(text); ... }`.
std::string_view next_line(std::string_view& text);

// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code points above
// U+10FFFF): what JSON documents can carry.
bool is_valid_utf8(std::string_view s);

}  // namespace ctrust
