// LogWriter: an append-only, crash-safe binary measurement-list file.
//
// Contract: when append() returns success, the entries are on stable storage (written and
// fdatasync'ed), so a crash never loses an acknowledged entry. A crash in the middle of
// an append can leave a torn final record; open() always scans the file and reports one.
// It never drops it silently: with TailPolicy::kFail (the default) open() fails and says
// where; with TailPolicy::kTruncate it cuts the file back to the last whole record and
// reports what it removed in recovery(), so the caller can log the gap (the agent writes a
// violation record). A failed write is rolled back; a failed sync leaves the writer
// unusable, because what is on disk is then unknown.
//
// One writer per file: open() takes an exclusive flock() and fails if another holds it.
// Thread safety: a writer is single-threaded; serialize appends in the caller.
#pragma once

#include <optional>
#include <span>
#include <string>

#include "imalog/entry.h"
#include "util/unique_handle.h"

namespace ctrust::imalog {

enum class TailPolicy : std::uint8_t { kFail, kTruncate };

struct LogWriterOptions {
  HashAlg header_alg = HashAlg::kSha1;  // 20-byte headers: the classic form evmctl reads
  TailPolicy tail_policy = TailPolicy::kFail;
  bool sync = true;  // fdatasync before acknowledging; off only for bulk generation
};

struct Recovery {
  std::uint64_t entries_kept = 0;
  std::uint64_t bytes_kept = 0;
  std::uint64_t bytes_removed = 0;
  std::string reason;  // what was wrong with the tail
};

class LogWriter {
 public:
  static Result<LogWriter> open(const std::string& path, const LogWriterOptions& options = {});

  // Appends entries with header digests in the writer's header algorithm; returns once they
  // are durable. All or nothing: on error the file is as it was.
  Result<void> append(std::span<const Entry> entries) { return append(entries, options_.sync); }
  Result<void> append(const Entry& entry) { return append(std::span<const Entry>(&entry, 1)); }
  // The same, durable only if `sync` (else written, readable and surviving a crash of this
  // process, and durable at the next sync()).
  Result<void> append(std::span<const Entry> entries, bool sync);
  // Makes everything written so far durable (for writers opened with sync = false).
  Result<void> sync();

  std::uint64_t entries() const { return entries_; }
  std::uint64_t size() const { return size_; }
  HashAlg header_alg() const { return options_.header_alg; }
  const std::optional<Recovery>& recovery() const { return recovery_; }

 private:
  LogWriter() = default;
  std::string path_;
  UniqueFd fd_;
  LogWriterOptions options_;
  std::uint64_t entries_ = 0;
  std::uint64_t size_ = 0;
  bool failed_ = false;
  std::optional<Recovery> recovery_;
  Bytes scratch_;
};

}  // namespace ctrust::imalog
