// Strict JSON parsing for untrusted documents (policies, Keylime runtime policies, OCI
// indexes, manifests and configs).
//
// nlohmann's DOM parser silently keeps the last of duplicate keys, which lets two readers
// of one document see different values; this front end rejects duplicates and nesting
// deeper than `max_depth`, and turns every parse error into an Error (no exceptions).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string_view>

#include "util/result.h"

namespace ctrust {

Result<nlohmann::json> parse_json_strict(std::string_view text, std::size_t max_depth);

}  // namespace ctrust
