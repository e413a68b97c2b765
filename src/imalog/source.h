// EntrySource: anything that yields measurement-list entries one at a time (the binary and
// ASCII readers today; the agent's live log later). open_log() picks the reader by
// looking at the file's first bytes.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "imalog/entry.h"

namespace ctrust::imalog {

class EntrySource {
 public:
  virtual ~EntrySource() = default;
  // Reads the next entry into `out`; false at a clean end of input.
  virtual Result<bool> next(Entry& out) = 0;
  virtual std::uint64_t count() const = 0;   // entries read so far
  virtual std::uint64_t offset() const = 0;  // bytes consumed so far
};

enum class LogForm : std::uint8_t { kAuto, kBinary, kAscii };

struct OpenOptions {
  LogForm form = LogForm::kAuto;
  // For the binary form: the header digest algorithm and byte order; detected if unset.
  std::optional<HashAlg> header_alg;
  std::optional<ByteOrder> order;
};

// Opens a log file ("-" is standard input) with the right reader.
Result<std::unique_ptr<EntrySource>> open_log(const std::string& path,
                                              const OpenOptions& options = {});

}  // namespace ctrust::imalog
