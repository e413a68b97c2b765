#include "cmd/ctrust/cli.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "util/text.h"

namespace ctrust::cli {
namespace {
// Below this much work a bar would only flicker.
constexpr std::uint64_t kMinProgressTotal = 64ull << 20;
}  // namespace

int report_error(const std::string& message) {
  // Messages quote file names and untrusted input: control characters never reach the
  // terminal (UTF-8 passes unchanged).
  std::string safe =
      escape_bytes_if(message, [](unsigned char c) { return c >= 0x20 && c != 0x7f; });
  std::fprintf(stderr, "ctrust: error: %s\n", safe.c_str());
  return kExitError;
}

int report_error(const Error& error) { return report_error(error.message()); }

void print_json(const nlohmann::json& doc) {
  // Names from untrusted logs may hold invalid UTF-8: replace rather than throw.
  std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

Progress::Progress(std::string label, std::uint64_t total)
    : label_(std::move(label)),
      total_(total),
      enabled_(total >= kMinProgressTotal && ::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { finish(); }

void Progress::advance(std::uint64_t done_units) {
  done_ += done_units;
  if (enabled_) draw(false);
}

void Progress::draw(bool force) {
  auto now = std::chrono::steady_clock::now();
  if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  double frac = total_ == 0 ? 1.0 : static_cast<double>(done_) / static_cast<double>(total_);
  if (frac > 1.0) frac = 1.0;
  constexpr int kWidth = 30;
  int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.append(static_cast<std::size_t>(kWidth - filled), '.');
  double secs = std::chrono::duration<double>(now - start_).count();
  double mbps = secs > 0 ? static_cast<double>(done_) / secs / 1e6 : 0;
  std::fprintf(stderr, "\r%s [%s] %3d%% %7.1f MB/s", label_.c_str(), bar.c_str(),
               static_cast<int>(frac * 100), mbps);
  std::fflush(stderr);
}

void Progress::finish() {
  if (enabled_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  enabled_ = false;
}

}  // namespace ctrust::cli
