// The binary measurement-list form (binary_runtime_measurements), read as a stream.
//
// BinaryReader never holds more than one record plus a fixed buffer in memory, so logs of
// any length can be shown, replayed and verified. The header digest size (20 bytes in the
// classic file, bank-sized in the per-bank files of kernels >= 6.10) and the byte order
// are detected from the first record unless given. Every error names the entry number and
// byte offset; a record cut short by end of file is Errc::kTruncated.
//
// Thread safety: a reader is single-threaded.
#pragma once

#include <optional>
#include <string>

#include "imalog/entry.h"
#include "imalog/source.h"
#include "util/unique_handle.h"

namespace ctrust::imalog {

struct BinaryFormat {
  HashAlg header_alg = HashAlg::kSha1;
  ByteOrder order = ByteOrder::kLittle;
};

// Guesses the format from the first bytes of a log (at least one whole record header is
// needed to be sure). nullopt if no header size and byte order gives a known template.
std::optional<BinaryFormat> detect_binary_format(ByteView head);

class BinaryReader final : public EntrySource {
 public:
  static Result<BinaryReader> open(const std::string& path,
                                   std::optional<BinaryFormat> format = std::nullopt);
  static Result<BinaryReader> from_fd(UniqueFd fd,
                                      std::optional<BinaryFormat> format = std::nullopt);
  // Reads from memory that must outlive the reader (no copy).
  static Result<BinaryReader> from_memory(ByteView data,
                                          std::optional<BinaryFormat> format = std::nullopt);

  const BinaryFormat& format() const { return format_; }
  // Reads the next record into `out` (reusing its buffers); false at a clean end of input.
  Result<bool> next(Entry& out) override;
  // Byte offset of the next record, i.e. the end of the last good one.
  std::uint64_t offset() const override { return offset_; }
  std::uint64_t count() const override { return count_; }

 private:
  BinaryReader() = default;
  Result<void> init(std::optional<BinaryFormat> format);
  // Makes at least `n` bytes available at the cursor; false if the input ends first.
  Result<bool> ensure(std::size_t n);
  Error error(Errc code, const std::string& what) const;

  UniqueFd fd_;
  Bytes buffer_;
  ByteView window_;  // readable bytes: [cursor_, window_.size())
  std::size_t cursor_ = 0;
  std::uint64_t file_pos_ = 0;  // fd offset of the byte after window_
  bool eof_ = false;
  BinaryFormat format_;
  std::uint64_t offset_ = 0;
  std::uint64_t count_ = 0;
};

// Appends the binary form of `entry` to `out`. The header digest written is
// entry.template_digest, whose size sets the header size; integers are little-endian.
Result<void> append_binary(Bytes& out, const Entry& entry);

}  // namespace ctrust::imalog
