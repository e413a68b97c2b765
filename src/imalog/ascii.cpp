#include "imalog/ascii.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "util/endian.h"
#include "util/file.h"
#include "util/text.h"

namespace ctrust::imalog {
namespace {

Error line_error(const std::string& what) { return Error(Errc::kFormat, what); }

// Splits off the next space-separated token; `last` takes the rest of the line.
std::string_view take_token(std::string_view& rest, bool last) {
  if (last) {
    std::string_view all = rest;
    rest = {};
    return all;
  }
  std::size_t sp = rest.find(' ');
  std::string_view tok = rest.substr(0, sp);
  rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
  return tok;
}

Result<void> append_hex_field(Bytes& data, std::string_view hex, FieldId id) {
  auto raw = from_hex(hex);
  if (!raw) return line_error(std::string(field_name(id)) + ": " + raw.error().message());
  append_le32(data, static_cast<std::uint32_t>(raw->size()));
  data.insert(data.end(), raw->begin(), raw->end());
  return ok_result();
}

// "[type:]alg:hex" -> u32 len + "[type:]alg:" NUL digest.
Result<void> append_digest_field(Bytes& data, std::string_view tok, FieldId id, bool with_type) {
  std::size_t colon = tok.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return line_error(std::string(field_name(id)) + ": expected ALG:HEX, got '" + printable(tok) +
                      "'");
  }
  std::string_view prefix = tok.substr(0, colon + 1);
  bool has_type = prefix.substr(0, colon).find(':') != std::string_view::npos;
  if (has_type != with_type) {
    return line_error(std::string(field_name(id)) + ": malformed algorithm prefix");
  }
  auto raw = from_hex(tok.substr(colon + 1));
  if (!raw) return line_error(std::string(field_name(id)) + ": " + raw.error().message());
  append_le32(data, static_cast<std::uint32_t>(prefix.size() + 1 + raw->size()));
  data.insert(data.end(), prefix.begin(), prefix.end());
  data.push_back(0);
  data.insert(data.end(), raw->begin(), raw->end());
  return ok_result();
}

}  // namespace

Result<Entry> parse_ascii_line(std::string_view line) {
  Entry e;
  std::string_view rest = line;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);  // "%2d" pads with a space
  std::uint32_t pcr = 0;
  auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pcr);
  if (ec != std::errc() || ptr == rest.data()) return line_error("expected a PCR number");
  if (pcr > kMaxPcrIndex) {
    return line_error("PCR index " + std::to_string(pcr) + " is out of range 0-23");
  }
  e.pcr = pcr;
  rest.remove_prefix(static_cast<std::size_t>(ptr - rest.data()));
  if (rest.empty() || rest.front() != ' ') return line_error("expected a space after the PCR");
  rest.remove_prefix(1);

  std::string_view digest_hex = take_token(rest, false);
  auto alg = crypto::hash_alg_for_size(digest_hex.size() / 2);
  if (!alg || digest_hex.size() % 2 != 0) {
    return line_error("template digest has " + std::to_string(digest_hex.size()) +
                      " hex digits; expected 40, 64, 96 or 128");
  }
  auto td = Digest::from_hex(*alg, digest_hex);
  if (!td) return line_error("template digest: " + td.error().message());
  e.template_digest = *td;

  if (rest.empty()) return line_error("missing template name");
  rest.remove_prefix(1);
  std::string_view tname = take_token(rest, false);
  const TemplateDesc* desc = find_template(tname);
  if (desc == nullptr) {
    return Error(Errc::kUnsupported, "unknown template '" + printable(tname) + "'");
  }
  e.template_name = std::string(tname);

  for (std::size_t i = 0; i < desc->fields.size(); ++i) {
    FieldId id = desc->fields[i];
    bool last = i + 1 == desc->fields.size();
    std::string_view tok;
    if (!rest.empty()) {
      rest.remove_prefix(1);  // the separating space
      tok = take_token(rest, last);
    } else if (id != FieldId::kSig && id != FieldId::kBuf && id != FieldId::kModsig &&
               id != FieldId::kDModsig) {
      return line_error("missing field " + std::string(field_name(id)));
    }
    if (tok.find(' ') != std::string_view::npos) {
      return line_error("field " + std::string(field_name(id)) + " contains a space");
    }
    switch (id) {
      case FieldId::kD: {
        auto raw = from_hex(tok);
        if (!raw || raw->size() != 20) return line_error("d: expected 40 hex digits");
        e.data.insert(e.data.end(), raw->begin(), raw->end());
        break;
      }
      case FieldId::kN:
        if (tok.size() > kLegacyNameMax) return line_error("n: name longer than 255 bytes");
        append_le32(e.data, static_cast<std::uint32_t>(tok.size()));
        e.data.insert(e.data.end(), tok.begin(), tok.end());
        break;
      case FieldId::kDng:
        CTRUST_TRY(append_digest_field(e.data, tok, id, false));
        break;
      case FieldId::kDngV2:
        CTRUST_TRY(append_digest_field(e.data, tok, id, true));
        break;
      case FieldId::kDModsig:
        if (tok.empty()) {
          append_le32(e.data, 0);
        } else {
          CTRUST_TRY(append_digest_field(e.data, tok, id, false));
        }
        break;
      case FieldId::kNng:
        if (tok.size() + 1 > kMaxEventNameLen) {
          return Error(Errc::kLimit,
                       "n-ng: name longer than " + std::to_string(kMaxEventNameLen - 1) + " bytes");
        }
        append_le32(e.data, static_cast<std::uint32_t>(tok.size() + 1));
        e.data.insert(e.data.end(), tok.begin(), tok.end());
        e.data.push_back(0);
        break;
      case FieldId::kSig:
      case FieldId::kBuf:
      case FieldId::kModsig:
        CTRUST_TRY(append_hex_field(e.data, tok, id));
        break;
    }
  }
  if (!rest.empty()) return line_error("unexpected text after the last field");
  if (e.data.size() > kMaxTemplateDataLen) {
    return Error(Errc::kLimit, "template data exceeds the 1 MiB limit");
  }
  // Rebuilt data must be well-formed by the same rules as binary records.
  CTRUST_TRY(parse_fields(e));
  return e;
}

Result<void> append_ascii(std::string& out, const Entry& e) {
  CTRUST_ASSIGN_OR_RETURN(Fields f, parse_fields(e));
  const TemplateDesc* desc = find_template(e.template_name);
  if (f.name.find_first_of(" \n") != std::string_view::npos) {
    return Error(Errc::kUnsupported, "name '" + printable(f.name) +
                                         "' contains a space or newline, which the ASCII form "
                                         "cannot represent (use the binary form or JSON)");
  }
  char pcr[16];
  std::snprintf(pcr, sizeof(pcr), "%2u ", e.pcr);
  out += pcr;
  append_hex(out, e.template_digest.view());
  out += ' ';
  out += e.template_name;
  auto prefixed = [&](std::string_view type, std::string_view alg, ByteView digest) {
    if (!type.empty()) {
      out += type;
      out += ':';
    }
    out += alg;
    out += ':';
    append_hex(out, digest);
  };
  for (FieldId id : desc->fields) {
    out += ' ';
    switch (id) {
      case FieldId::kD:
        append_hex(out, f.file_digest);
        break;
      case FieldId::kDng:
        prefixed({}, f.digest_alg, f.file_digest);
        break;
      case FieldId::kDngV2:
        prefixed(f.digest_type, f.digest_alg, f.file_digest);
        break;
      case FieldId::kDModsig:
        if (!f.dmodsig.empty()) prefixed({}, f.dmodsig_alg, f.dmodsig);
        break;
      case FieldId::kN:
      case FieldId::kNng:
        out += f.name;
        break;
      case FieldId::kSig:
        append_hex(out, f.sig);
        break;
      case FieldId::kBuf:
        append_hex(out, f.buf);
        break;
      case FieldId::kModsig:
        append_hex(out, f.modsig);
        break;
    }
  }
  out += '\n';
  return ok_result();
}

bool looks_ascii(ByteView head) {
  // The ASCII form starts with optional spaces, PCR digits and a space; the binary form
  // starts with a little- or big-endian u32 holding a small number, i.e. NUL bytes.
  std::size_t i = 0;
  while (i < head.size() && head[i] == ' ') ++i;
  std::size_t digits = 0;
  while (i < head.size() && head[i] >= '0' && head[i] <= '9') ++i, ++digits;
  return digits > 0 && i < head.size() && head[i] == ' ';
}

Result<AsciiReader> AsciiReader::open(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_read(path));
  return from_fd(std::move(fd));
}

Result<AsciiReader> AsciiReader::from_fd(UniqueFd fd) {
  AsciiReader r;
  r.fd_ = std::move(fd);
  r.buffer_.resize(kMaxAsciiLine + 1);
  return r;
}

AsciiReader AsciiReader::from_memory(ByteView data) {
  AsciiReader r;
  r.window_ = data;
  r.eof_ = true;
  return r;
}

Result<std::string_view> AsciiReader::next_line(bool* eof) {
  *eof = false;
  for (;;) {
    ByteView avail = window_.subspan(cursor_);
    auto nl = std::find(avail.begin(), avail.end(), std::uint8_t{'\n'});
    if (nl != avail.end()) {
      std::size_t len = static_cast<std::size_t>(nl - avail.begin());
      if (len > kMaxAsciiLine) break;
      std::string_view line(reinterpret_cast<const char*>(avail.data()), len);
      cursor_ += len + 1;
      return line;
    }
    if (avail.size() > kMaxAsciiLine) break;
    if (eof_) {
      if (avail.empty()) {
        *eof = true;
        return std::string_view{};
      }
      return Error(Errc::kTruncated, "line " + std::to_string(count_ + 1) +
                                         ": no newline at end of input (truncated log?)");
    }
    std::size_t left = avail.size();
    if (left > 0) std::memmove(buffer_.data(), avail.data(), left);
    auto got = pread_full(fd_.get(), std::span(buffer_.data() + left, buffer_.size() - left),
                          static_cast<off_t>(file_pos_));
    if (!got) return std::move(got).error();
    if (*got < buffer_.size() - left) eof_ = true;
    file_pos_ += *got;
    window_ = ByteView(buffer_.data(), left + *got);
    cursor_ = 0;
  }
  return Error(Errc::kLimit, "line " + std::to_string(count_ + 1) + " is longer than " +
                                 std::to_string(kMaxAsciiLine) + " bytes");
}

Result<bool> AsciiReader::next(Entry& out) {
  bool eof = false;
  CTRUST_ASSIGN_OR_RETURN(std::string_view line, next_line(&eof));
  if (eof) return false;
  auto e = parse_ascii_line(line);
  if (!e) {
    return Error(e.error().code(),
                 "line " + std::to_string(count_ + 1) + ": " + e.error().message());
  }
  out = std::move(*e);
  offset_ += line.size() + 1;
  ++count_;
  return true;
}

}  // namespace ctrust::imalog
