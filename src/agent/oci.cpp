#include "agent/oci.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "util/json.h"
#include "util/text.h"

namespace ctrust::agent {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxDepth = 32;
constexpr std::size_t kMaxString = 4096;
constexpr std::size_t kMaxItems = 4096;

Error bad(const std::string& where, const std::string& what) {
  return {Errc::kFormat, where + ": " + what};
}

Result<const json*> member(const json& object, const char* name, const std::string& where,
                           bool required) {
  auto it = object.find(name);
  if (it == object.end()) {
    if (required) return bad(where, std::string("missing \"") + name + "\"");
    return static_cast<const json*>(nullptr);
  }
  return &*it;
}

Result<std::string> string_value(const json& value, const std::string& where) {
  if (!value.is_string()) return bad(where, "must be a string");
  const auto& s = value.get_ref<const std::string&>();
  if (s.size() > kMaxString) return bad(where, "longer than " + std::to_string(kMaxString));
  if (s.find('\0') != std::string::npos) return bad(where, "contains a NUL byte");
  if (!is_valid_utf8(s)) return bad(where, "is not valid UTF-8");
  return s;
}

Result<std::string> string_member(const json& object, const char* name, const std::string& where,
                                  bool required) {
  CTRUST_ASSIGN_OR_RETURN(const json* value, member(object, name, where, required));
  if (value == nullptr) return std::string();
  return string_value(*value, where + "." + name);
}

Result<std::map<std::string, std::string>> annotations(const json& object,
                                                       const std::string& where) {
  std::map<std::string, std::string> out;
  CTRUST_ASSIGN_OR_RETURN(const json* value, member(object, "annotations", where, false));
  if (value == nullptr || value->is_null()) return out;
  if (!value->is_object()) return bad(where + ".annotations", "must be an object");
  if (value->size() > kMaxItems) return bad(where + ".annotations", "too many entries");
  for (const auto& [key, v] : value->items()) {
    std::string at = where + ".annotations[\"" + printable(key) + "\"]";
    CTRUST_ASSIGN_OR_RETURN(std::string text, string_value(v, at));
    out.emplace(key, std::move(text));
  }
  return out;
}

Result<json> parse_document(std::string_view text, const char* what) {
  if (text.size() > kMaxOciDocument) {
    return Error(Errc::kLimit, std::string(what) + " is larger than 4 MiB");
  }
  auto doc = parse_json_strict(text, kMaxDepth);
  if (!doc) return std::move(doc).error().with_context(what);
  if (!doc->is_object()) return bad(what, "must be a JSON object");
  return std::move(*doc);
}

}  // namespace

Result<OciState> parse_oci_state(std::string_view text) {
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_document(text, "OCI state"));
  const std::string where = "OCI state";
  OciState state;
  CTRUST_ASSIGN_OR_RETURN(state.oci_version, string_member(doc, "ociVersion", where, true));
  CTRUST_ASSIGN_OR_RETURN(state.id, string_member(doc, "id", where, true));
  if (state.id.empty()) return bad(where + ".id", "is empty");
  CTRUST_ASSIGN_OR_RETURN(state.status, string_member(doc, "status", where, true));
  if (state.status != "creating" && state.status != "created" && state.status != "running" &&
      state.status != "stopped") {
    return bad(where + ".status", "unknown status \"" + printable(state.status) + "\"");
  }
  CTRUST_ASSIGN_OR_RETURN(const json* pid, member(doc, "pid", where, false));
  if (pid != nullptr) {
    if (!pid->is_number_integer() || pid->get<std::int64_t>() < 0 ||
        pid->get<std::int64_t>() > 0x3fffffff) {
      return bad(where + ".pid", "must be a process id");
    }
    state.pid = static_cast<int>(pid->get<std::int64_t>());
  }
  if (!state.pid && state.status != "stopped") {
    return bad(where, "missing \"pid\" for a " + state.status + " container");
  }
  CTRUST_ASSIGN_OR_RETURN(state.bundle, string_member(doc, "bundle", where, true));
  if (state.bundle.empty() || state.bundle[0] != '/') {
    return bad(where + ".bundle", "must be an absolute path");
  }
  CTRUST_ASSIGN_OR_RETURN(state.annotations, annotations(doc, where));
  return state;
}

Result<OciConfig> parse_oci_config(std::string_view text) {
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_document(text, "config.json"));
  const std::string where = "config.json";
  OciConfig config;
  CTRUST_ASSIGN_OR_RETURN(const json* root, member(doc, "root", where, true));
  if (!root->is_object()) return bad(where + ".root", "must be an object");
  CTRUST_ASSIGN_OR_RETURN(config.root_path, string_member(*root, "path", where + ".root", true));
  if (config.root_path.empty()) return bad(where + ".root.path", "is empty");
  CTRUST_ASSIGN_OR_RETURN(const json* readonly, member(*root, "readonly", where + ".root", false));
  if (readonly != nullptr) {
    if (!readonly->is_boolean()) return bad(where + ".root.readonly", "must be true or false");
    config.root_readonly = readonly->get<bool>();
  }
  CTRUST_ASSIGN_OR_RETURN(const json* mounts, member(doc, "mounts", where, false));
  if (mounts != nullptr) {
    if (!mounts->is_array()) return bad(where + ".mounts", "must be an array");
    if (mounts->size() > kMaxItems) return bad(where + ".mounts", "too many mounts");
    for (std::size_t i = 0; i < mounts->size(); ++i) {
      const json& m = (*mounts)[i];
      std::string at = where + ".mounts[" + std::to_string(i) + "]";
      if (!m.is_object()) return bad(at, "must be an object");
      OciMount mount;
      CTRUST_ASSIGN_OR_RETURN(mount.destination, string_member(m, "destination", at, true));
      if (mount.destination.empty() || mount.destination[0] != '/') {
        return bad(at + ".destination", "must be an absolute path");
      }
      CTRUST_ASSIGN_OR_RETURN(mount.type, string_member(m, "type", at, false));
      CTRUST_ASSIGN_OR_RETURN(mount.source, string_member(m, "source", at, false));
      CTRUST_ASSIGN_OR_RETURN(const json* options, member(m, "options", at, false));
      if (options != nullptr) {
        if (!options->is_array() || options->size() > kMaxItems) {
          return bad(at + ".options", "must be an array of strings");
        }
        for (const auto& o : *options) {
          CTRUST_ASSIGN_OR_RETURN(std::string opt, string_value(o, at + ".options[]"));
          mount.options.push_back(std::move(opt));
        }
      }
      config.mounts.push_back(std::move(mount));
    }
  }
  CTRUST_ASSIGN_OR_RETURN(const json* linux_section, member(doc, "linux", where, false));
  if (linux_section != nullptr) {
    if (!linux_section->is_object()) return bad(where + ".linux", "must be an object");
    CTRUST_ASSIGN_OR_RETURN(config.cgroups_path,
                            string_member(*linux_section, "cgroupsPath", where + ".linux", false));
    CTRUST_ASSIGN_OR_RETURN(const json* namespaces,
                            member(*linux_section, "namespaces", where + ".linux", false));
    if (namespaces != nullptr) {
      if (!namespaces->is_array() || namespaces->size() > 16) {
        return bad(where + ".linux.namespaces", "must be an array of at most 16 namespaces");
      }
      for (std::size_t i = 0; i < namespaces->size(); ++i) {
        const json& n = (*namespaces)[i];
        std::string at = where + ".linux.namespaces[" + std::to_string(i) + "]";
        if (!n.is_object()) return bad(at, "must be an object");
        OciNamespace ns;
        CTRUST_ASSIGN_OR_RETURN(ns.type, string_member(n, "type", at, true));
        static const char* const kTypes[] = {"pid", "network", "mount",  "ipc",
                                             "uts", "user",    "cgroup", "time"};
        if (std::find(std::begin(kTypes), std::end(kTypes), ns.type) == std::end(kTypes)) {
          return bad(at + ".type", "unknown namespace type \"" + printable(ns.type) + "\"");
        }
        for (const auto& seen : config.namespaces) {
          if (seen.type == ns.type) {
            return bad(at + ".type", "namespace \"" + ns.type + "\" listed twice");
          }
        }
        CTRUST_ASSIGN_OR_RETURN(ns.path, string_member(n, "path", at, false));
        if (!ns.path.empty() && ns.path[0] != '/') {
          return bad(at + ".path", "must be an absolute path");
        }
        config.namespaces.push_back(std::move(ns));
      }
    }
  }
  CTRUST_ASSIGN_OR_RETURN(config.annotations, annotations(doc, where));
  return config;
}

Result<ContainerSettings> settings_from_annotations(
    const std::map<std::string, std::string>& annotations) {
  ContainerSettings settings;
  if (auto it = annotations.find(kPolicyAnnotation); it != annotations.end()) {
    if (it->second.empty()) return bad(kPolicyAnnotation, "is empty");
    settings.policy = it->second;
  }
  if (auto it = annotations.find(kModeAnnotation); it != annotations.end()) {
    auto mode = policy::parse_mode(it->second);
    if (!mode) {
      return bad(kModeAnnotation, "unknown mode \"" + printable(it->second) +
                                      "\" (expected off, measure, audit or enforce)");
    }
    settings.mode = *mode;
  }
  return settings;
}

}  // namespace ctrust::agent
