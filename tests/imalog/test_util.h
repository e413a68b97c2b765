// Helpers shared by the imalog tests.
#pragma once

#include <string>

#include "crypto/digest.h"
#include "imalog/entry.h"

namespace ctrust::imalog::testing {

inline Entry ng_entry(const std::string& name, const std::string& content,
                      HashAlg header = HashAlg::kSha1, const std::string& tmpl = "ima-ng") {
  MeasurementSpec spec;
  spec.template_name = tmpl;
  spec.name = name;
  spec.file_digest =
      *crypto::digest_bytes(tmpl == "ima" ? HashAlg::kSha1 : HashAlg::kSha256, as_bytes(content));
  if (tmpl == "ima-buf") spec.buf = Bytes(content.begin(), content.end());
  if (tmpl == "ima-sig") spec.sig = {0x03, 0x02, 0x04, 0xaa, 0xbb, 0xcc, 0xdd, 0x00, 0x01, 0x55};
  auto e = make_entry(spec, header);
  return *e;
}

}  // namespace ctrust::imalog::testing
