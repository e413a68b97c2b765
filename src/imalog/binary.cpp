#include "imalog/binary.h"

#include <algorithm>
#include <cstring>

#include "util/endian.h"
#include "util/file.h"
#include "util/text.h"

namespace ctrust::imalog {
namespace {

// A whole record always fits: header, the largest template name and template data.
constexpr std::size_t kBufferSize = 2 * kMaxTemplateDataLen + 4096;
// The buffer starts this small and grows as records need: zeroing 2 MiB for a log of a few
// records cost a container start milliseconds (docs/PERFORMANCE.md, container start).
constexpr std::size_t kInitialBuffer = std::size_t{64} * 1024;

bool plausible_name(ByteView name) {
  return find_template(std::string_view(reinterpret_cast<const char*>(name.data()), name.size())) !=
         nullptr;
}

}  // namespace

std::optional<BinaryFormat> detect_binary_format(ByteView head) {
  for (ByteOrder order : {ByteOrder::kLittle, ByteOrder::kBig}) {
    for (HashAlg alg : crypto::kAllHashAlgs) {
      std::size_t dsize = crypto::digest_size(alg);
      if (head.size() < 4 + dsize + 4) continue;
      bool big = order == ByteOrder::kBig;
      if (load32(big, head.data()) > kMaxPcrIndex) continue;
      std::uint32_t name_len = load32(big, head.data() + 4 + dsize);
      if (name_len == 0 || name_len > kMaxTemplateNameLen) continue;
      if (head.size() < 8 + dsize + name_len) continue;
      if (plausible_name(head.subspan(8 + dsize, name_len))) return BinaryFormat{alg, order};
    }
  }
  return std::nullopt;
}

Result<BinaryReader> BinaryReader::open(const std::string& path,
                                        std::optional<BinaryFormat> format) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_read(path));
  auto r = from_fd(std::move(fd), format);
  if (!r) return std::move(r).error().with_context(path);
  return r;
}

Result<BinaryReader> BinaryReader::from_fd(UniqueFd fd, std::optional<BinaryFormat> format) {
  BinaryReader r;
  r.fd_ = std::move(fd);
  CTRUST_TRY(r.init(format));
  return r;
}

Result<BinaryReader> BinaryReader::from_memory(ByteView data, std::optional<BinaryFormat> format) {
  BinaryReader r;
  r.window_ = data;
  r.eof_ = true;
  CTRUST_TRY(r.init(format));
  return r;
}

Result<void> BinaryReader::init(std::optional<BinaryFormat> format) {
  if (format) {
    format_ = *format;
    return ok_result();
  }
  // The longest header: u32 pcr, 64-byte digest, u32 name length, the longest name.
  CTRUST_ASSIGN_OR_RETURN(bool have, ensure(8 + crypto::kMaxDigestSize + kMaxTemplateNameLen));
  (void)have;  // a short log is still detected from what there is
  ByteView head = window_.subspan(cursor_);
  if (head.empty()) return ok_result();  // an empty log: no entries, any format
  auto detected = detect_binary_format(head);
  if (!detected) {
    return Error(Errc::kFormat,
                 "not an IMA binary measurement list: the first record does not parse with any "
                 "header digest size or byte order (is it the ASCII form?)");
  }
  format_ = *detected;
  return ok_result();
}

Result<bool> BinaryReader::ensure(std::size_t n) {
  if (window_.size() - cursor_ >= n) return true;
  if (eof_) return false;
  // Compact what is left to the front of the buffer and refill behind it.
  std::size_t left = window_.size() - cursor_;
  if (left > 0) std::memmove(buffer_.data(), window_.data() + cursor_, left);
  if (buffer_.empty() || buffer_.size() < n) {
    // Doubled as records need, up to kBufferSize (which holds any whole record).
    buffer_.resize(std::max({n, kInitialBuffer, std::min(2 * buffer_.size(), kBufferSize)}));
  }
  std::size_t have = left;
  while (have < n && !eof_) {
    auto got = pread_full(fd_.get(), std::span(buffer_.data() + have, buffer_.size() - have),
                          static_cast<off_t>(file_pos_));
    if (!got) return std::move(got).error();
    if (*got < buffer_.size() - have) eof_ = true;
    have += *got;
    file_pos_ += *got;
  }
  window_ = ByteView(buffer_.data(), have);
  cursor_ = 0;
  return have >= n;
}

Error BinaryReader::error(Errc code, const std::string& what) const {
  return Error(code, "entry " + std::to_string(count_ + 1) + " at offset " +
                         std::to_string(offset_) + ": " + what);
}

Result<bool> BinaryReader::next(Entry& out) {
  const bool big = format_.order == ByteOrder::kBig;
  const std::size_t dsize = crypto::digest_size(format_.header_alg);
  CTRUST_ASSIGN_OR_RETURN(bool any, ensure(1));
  if (!any) return false;

  auto truncated = [&](const char* part) {
    return error(Errc::kTruncated,
                 std::string("record ends inside its ") + part + " (torn or truncated log)");
  };
  CTRUST_ASSIGN_OR_RETURN(bool have_fixed, ensure(4 + dsize + 4));
  if (!have_fixed) return truncated("header");
  const std::uint8_t* p = window_.data() + cursor_;
  std::uint32_t pcr = load32(big, p);
  if (pcr > kMaxPcrIndex) {
    return error(Errc::kFormat, "PCR index " + std::to_string(pcr) + " is out of range 0-23");
  }
  std::uint32_t name_len = load32(big, p + 4 + dsize);
  if (name_len == 0 || name_len > kMaxTemplateNameLen) {
    return error(Errc::kFormat, "template name length " + std::to_string(name_len) +
                                    " is not between 1 and " + std::to_string(kMaxTemplateNameLen));
  }
  std::size_t pos = 8 + dsize;
  CTRUST_ASSIGN_OR_RETURN(bool have_name, ensure(pos + name_len));
  if (!have_name) return truncated("template name");
  p = window_.data() + cursor_;
  std::string_view name(reinterpret_cast<const char*>(p + pos), name_len);
  const TemplateDesc* desc = find_template(name);
  if (desc == nullptr) {
    return error(Errc::kUnsupported, "unknown template '" + printable(name) + "'");
  }
  pos += name_len;

  std::size_t data_len = 0;
  std::size_t data_start = pos;
  if (desc->legacy) {
    // `ima`: 20-byte digest, u32 name length, name; no overall length.
    CTRUST_ASSIGN_OR_RETURN(bool h, ensure(pos + 24));
    if (!h) return truncated("template data");
    p = window_.data() + cursor_;
    std::uint32_t n = load32(big, p + pos + 20);
    if (n > kLegacyNameMax) {
      return error(Errc::kFormat,
                   "ima template name length " + std::to_string(n) + " exceeds the limit of 255");
    }
    data_len = 24 + n;
  } else {
    CTRUST_ASSIGN_OR_RETURN(bool h, ensure(pos + 4));
    if (!h) return truncated("template data length");
    p = window_.data() + cursor_;
    std::uint32_t n = load32(big, p + pos);
    if (n > kMaxTemplateDataLen) {
      return error(Errc::kLimit, "template data length " + std::to_string(n) +
                                     " exceeds the limit of " +
                                     std::to_string(kMaxTemplateDataLen));
    }
    data_len = n;
    data_start = pos + 4;
  }
  CTRUST_ASSIGN_OR_RETURN(bool have_data, ensure(data_start + data_len));
  if (!have_data) return truncated("template data");
  p = window_.data() + cursor_;

  out.pcr = pcr;
  out.order = format_.order;
  out.template_digest.alg = format_.header_alg;
  std::memcpy(out.template_digest.bytes.data(), p + 4, dsize);
  // `name` pointed into the buffer before the last ensure(), which may have moved it.
  out.template_name.assign(reinterpret_cast<const char*>(p + 8 + dsize), name_len);
  out.data.assign(p + data_start, p + data_start + data_len);
  std::size_t record = data_start + data_len;
  cursor_ += record;
  offset_ += record;
  ++count_;
  return true;
}

Result<void> append_binary(Bytes& out, const Entry& e) {
  const TemplateDesc* desc = find_template(e.template_name);
  if (desc == nullptr)
    return Error(Errc::kUnsupported, "unknown template '" + e.template_name + "'");
  // Never write what no reader would accept.
  CTRUST_TRY(parse_fields(e));
  if (e.order != ByteOrder::kLittle) {
    return Error(Errc::kUnsupported,
                 "a big-endian (host order) record cannot be written in the canonical "
                 "little-endian form without changing its template digest");
  }
  append_le32(out, e.pcr);
  out.insert(out.end(), e.template_digest.view().begin(), e.template_digest.view().end());
  append_le32(out, static_cast<std::uint32_t>(e.template_name.size()));
  out.insert(out.end(), e.template_name.begin(), e.template_name.end());
  if (!desc->legacy) append_le32(out, static_cast<std::uint32_t>(e.data.size()));
  out.insert(out.end(), e.data.begin(), e.data.end());
  return ok_result();
}

}  // namespace ctrust::imalog
