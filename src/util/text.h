// Text helpers for messages that quote untrusted input.
#pragma once

#include <string>
#include <string_view>

namespace ctrust {

// `s` made safe to print on a terminal or in a log line: bytes outside printable ASCII
// become \xNN, and the result is cut at `max` input bytes with "..." appended. Untrusted
// input quoted in an error message always goes through this, so that a hostile log or
// policy cannot move the cursor, rewrite the screen or forge extra log lines.
std::string printable(std::string_view s, std::size_t max = 64);

}  // namespace ctrust
