// The ASCII measurement-list form (ascii_runtime_measurements): one record per line,
// `PCR template-digest template-name field...`, exactly as the kernel prints it.
//
// Parsing rebuilds the template data from the fields, so an ASCII log can be replayed and
// converted to binary. Names that contain a space or a newline cannot be represented
// (the kernel replaces spaces with '_' before it stores a name); writing such a record is
// an error, never a silent change.
//
// Thread safety: a reader is single-threaded.
#pragma once

#include <string>
#include <string_view>

#include "imalog/entry.h"
#include "imalog/source.h"
#include "util/unique_handle.h"

namespace ctrust::imalog {

inline constexpr std::size_t kMaxAsciiLine = 2 * kMaxTemplateDataLen + 4096;

// Parses one line (without its newline).
Result<Entry> parse_ascii_line(std::string_view line);

// Appends one line, newline included.
Result<void> append_ascii(std::string& out, const Entry& entry);

class AsciiReader final : public EntrySource {
 public:
  static Result<AsciiReader> open(const std::string& path);
  static Result<AsciiReader> from_fd(UniqueFd fd);
  // Reads from memory that must outlive the reader (no copy).
  static AsciiReader from_memory(ByteView data);

  // Reads the next record into `out`; false at the end of input. Errors name the line.
  Result<bool> next(Entry& out) override;
  std::uint64_t count() const override { return count_; }
  std::uint64_t offset() const override { return offset_; }

 private:
  AsciiReader() = default;
  Result<std::string_view> next_line(bool* eof);

  UniqueFd fd_;
  Bytes buffer_;
  ByteView window_;
  std::size_t cursor_ = 0;
  std::uint64_t file_pos_ = 0;
  bool eof_ = false;
  std::uint64_t count_ = 0;
  std::uint64_t offset_ = 0;
};

// True if the bytes look like the ASCII form rather than the binary one.
bool looks_ascii(ByteView head);

}  // namespace ctrust::imalog
