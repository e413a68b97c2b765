// Reading TOML configuration files strictly (toml++ underneath): a TomlSection reads one
// table's keys with their types checked and refuses keys nobody asked for, so that a typo
// never silently leaves a default in place. Used by ctrustd's and ctrust-verifier's
// configurations. Header-only; toml++ throws only while parsing, which the callers catch.
#pragma once

#include <sys/stat.h>
#include <toml++/toml.h>

#include <cerrno>
#include <optional>

#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "util/file.h"
#include "util/result.h"

namespace ctrust {

// Reads one section's keys, refusing unknown ones and wrong types.
class TomlSection {
 public:
  TomlSection(const toml::table* table, std::string name, std::string origin)
      : table_(table), name_(std::move(name)), origin_(std::move(origin)) {}

  Result<void> string(const char* key, std::string& out) {
    return get<std::string>(key, "a string", [&](const std::string& v) {
      out = v;
      return ok_result();
    });
  }
  Result<void> boolean(const char* key, bool& out) {
    return get<bool>(key, "true or false", [&](bool v) {
      out = v;
      return ok_result();
    });
  }
  template <typename T>
  Result<void> number(const char* key, T& out, std::int64_t min, std::int64_t max) {
    return get<std::int64_t>(key, "an integer", [&](std::int64_t v) -> Result<void> {
      if (v < min || v > max) {
        return error(key, "must be from " + std::to_string(min) + " to " + std::to_string(max));
      }
      out = static_cast<T>(v);
      return ok_result();
    });
  }
  Result<void> strings(const char* key, std::vector<std::string>& out) {
    seen_.insert(key);
    if (table_ == nullptr) return ok_result();
    const toml::node* node = table_->get(key);
    if (node == nullptr) return ok_result();
    const toml::array* array = node->as_array();
    if (array == nullptr) return error(key, "must be an array of strings");
    out.clear();
    for (const auto& item : *array) {
      auto v = item.value<std::string>();
      if (!v || !item.is_string()) return error(key, "must be an array of strings");
      out.push_back(*v);
    }
    return ok_result();
  }
  // Whether the section sets `key` (read it with one of the methods above).
  bool has(const char* key) const { return table_ != nullptr && table_->get(key) != nullptr; }
  Error error(const std::string& key, const std::string& what) const {
    return Error(Errc::kFormat, origin_ + ": " + qualified(key) + " " + what);
  }
  // A key read elsewhere (a sub-table).
  void known(const char* key) { seen_.insert(key); }
  // Every key of the section must have been asked for.
  Result<void> no_unknown_keys() {
    if (table_ == nullptr) return ok_result();
    for (const auto& [k, v] : *table_) {
      if (!seen_.contains(std::string(k.str()))) {
        return Error(Errc::kFormat, origin_ + ": unknown key " + qualified(std::string(k.str())));
      }
    }
    return ok_result();
  }

 private:
  std::string qualified(const std::string& key) const {
    return name_.empty() ? key : name_ + "." + key;
  }
  template <typename T, typename F>
  Result<void> get(const char* key, const char* kind, F&& apply) {
    seen_.insert(key);
    if (table_ == nullptr) return ok_result();
    const toml::node* node = table_->get(key);
    if (node == nullptr) return ok_result();
    bool right_type = false;
    if constexpr (std::is_same_v<T, std::string>) right_type = node->is_string();
    if constexpr (std::is_same_v<T, bool>) right_type = node->is_boolean();
    if constexpr (std::is_same_v<T, std::int64_t>) right_type = node->is_integer();
    if (!right_type) return error(key, std::string("must be ") + kind);
    return apply(*node->value<T>());
  }

  const toml::table* table_;
  std::string name_;
  std::string origin_;
  std::set<std::string> seen_;
};

inline const toml::table* subtable(const toml::table& root, const char* name) {
  const toml::node* node = root.get(name);
  return node == nullptr ? nullptr : node->as_table();
}

// Parses a TOML document; `origin` (the file name) and the position begin each error.
inline Result<toml::table> parse_toml(std::string_view text, const std::string& origin) {
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin.line << ":" << e.source().begin.column;
    return Error(Errc::kFormat, origin + ":" + where.str() + ": " + std::string(e.description()));
  } catch (const std::exception& e) {
    // toml++ throws only parse_error for bad input; anything else (bad_alloc) must not
    // cross the module boundary either.
    return Error(Errc::kFormat, origin + ": " + e.what());
  }
}

// log_level of a configuration: trace, debug, info, warn, error or off.
inline Result<void> check_log_level(const std::string& level, const std::string& origin) {
  for (const char* known : {"trace", "debug", "info", "warn", "error", "off"}) {
    if (level == known) return ok_result();
  }
  return Error(Errc::kFormat,
               origin + ": log_level must be trace, debug, info, warn, error or off");
}

// A configuration file's text (at most 1 MiB), or nullopt when it does not exist and
// `must_exist` is false (the defaults then apply).
inline Result<std::optional<std::string>> read_config_text(const std::string& path,
                                                           bool must_exist) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT && !must_exist) {
    return std::optional<std::string>();
  }
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(path, std::size_t{1} << 20));
  return std::optional<std::string>(std::string(bytes.begin(), bytes.end()));
}

}  // namespace ctrust
