#include "policy/interop.h"

#include <regex.h>

#include <algorithm>
#include <map>

#include "util/json.h"
#include "util/text.h"

namespace ctrust::policy {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxKeylimeDepth = 16;

bool is_glob_char(char c) { return c == '*' || c == '?' || c == '[' || c == '\\'; }

// Lower-case hex of a known digest length -> Digest.
Result<crypto::Digest> digest_from_hex(std::string_view hex, std::optional<crypto::HashAlg> alg,
                                       const std::string& where) {
  std::optional<crypto::HashAlg> a = alg ? alg : crypto::hash_alg_for_size(hex.size() / 2);
  if (!a || hex.size() % 2 != 0 || hex.size() != 2 * crypto::digest_size(*a)) {
    return Error(Errc::kFormat, where + ": \"" + printable(hex, 140) +
                                    "\" is not a sha1, sha256, sha384 or sha512 hex digest" +
                                    (alg ? " of the given algorithm" : ""));
  }
  auto d = crypto::Digest::from_hex(*a, hex);
  if (!d) return std::move(d).error().with_context(where);
  return d;
}

// Keylime excludes are Python regexes; ctrust's are POSIX extended ones. They agree on the
// common subset; this names the first construct outside it ("" if none): Python's escapes
// for classes and anchors, groups with "(?", and lazy quantifiers.
std::string python_only_regex(std::string_view re) {
  for (std::size_t i = 0; i + 1 < re.size(); ++i) {
    char c = re[i];
    char n = re[i + 1];
    if (c == '\\') {
      if (std::string_view("dDwWsSbBAZ").find(n) != std::string_view::npos) {
        return std::string("escape \\") + n;
      }
      ++i;  // an escaped character, whatever it is
    } else if (c == '(' && n == '?') {
      return "group \"(?\"";
    } else if ((c == '*' || c == '+' || c == '?' || c == '}') && n == '?') {
      return std::string("lazy quantifier \"") + c + "?\"";
    }
  }
  return {};
}

// Compiled exclude regexes for create; matched at the start of the path.
class Excluder {
 public:
  static Result<Excluder> make(const std::vector<std::string>& res) {
    Excluder e;
    for (const std::string& re : res) {
      auto r = std::make_shared<regex_t>();
      if (::regcomp(r.get(), re.c_str(), REG_EXTENDED) != 0) {
        return Error(Errc::kInvalidArgument,
                     "--exclude \"" + re + "\" is not a POSIX extended regular expression");
      }
      e.res_.emplace_back(r.get(), [](regex_t* x) { ::regfree(x); });
      e.keep_.push_back(std::move(r));
    }
    return e;
  }
  bool matches(const std::string& path) const {
    for (const auto& r : res_) {
      regmatch_t m{};
      if (::regexec(r.get(), path.c_str(), 1, &m, 0) == 0 && m.rm_so == 0) return true;
    }
    return false;
  }

 private:
  std::vector<std::shared_ptr<regex_t>> keep_;
  std::vector<std::shared_ptr<regex_t>> res_;
};

}  // namespace

std::string literal_pattern(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (char c : path) {
    if (is_glob_char(c)) out += '\\';
    out += c;
  }
  return out;
}

std::optional<std::string> pattern_literal(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\') {
      if (i + 1 == pattern.size()) return std::nullopt;
      out += pattern[++i];
    } else if (is_glob_char(c)) {
      return std::nullopt;
    } else {
      out += c;
    }
  }
  return out;
}

Result<CreateReport> add_from_manifest(const image::Manifest& manifest,
                                       const CreateOptions& options, Policy& into) {
  CTRUST_ASSIGN_OR_RETURN(Excluder excluder, Excluder::make(options.excludes));
  CreateReport report;
  for (const image::ManifestEntry& e : manifest.entries) {
    if (e.type != image::FileType::kRegular) continue;
    ++report.files;
    if (!e.content) {
      return Error(Errc::kInternal, "the manifest was built without content digests");
    }
    if (!options.all && e.kind == image::ContentKind::kData) continue;
    if (options.exec_only && (e.mode & 0111) == 0) continue;
    if (e.path.find('\0') == std::string::npos && excluder.matches(e.path)) {
      ++report.excluded;
      continue;
    }
    into.allow.push_back(Allow{*e.content, {literal_pattern(e.path)}});
    ++report.listed;
  }
  into.excludes.insert(into.excludes.end(), options.excludes.begin(), options.excludes.end());
  CTRUST_TRY(normalize(into));
  return report;
}

Result<ImportReport> import_keylime(std::string_view text, Policy& into) {
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_json_strict(text, kMaxKeylimeDepth));
  if (!doc.is_object()) return Error(Errc::kFormat, "a Keylime runtime policy is a JSON object");
  ImportReport report;
  auto meta = doc.find("meta");
  if (meta == doc.end() || !meta->is_object() || !meta->contains("version") ||
      !(*meta)["version"].is_number_unsigned() || (*meta)["version"].get<std::uint64_t>() != 1) {
    return Error(Errc::kFormat,
                 R"(not a Keylime runtime policy version 1 ("meta": {"version": 1} missing))");
  }
  static const std::vector<std::string> kKnown = {"meta",     "release",           "digests",
                                                  "excludes", "keyrings",          "ima-buf",
                                                  "ima",      "verification-keys", "timestamp"};
  for (const auto& [k, v] : doc.items()) {
    if (std::find(kKnown.begin(), kKnown.end(), k) == kKnown.end()) {
      report.warnings.push_back("unknown member \"" + printable(k, 64) + "\" ignored");
    }
  }
  auto digests = doc.find("digests");
  if (digests == doc.end() || !digests->is_object()) {
    return Error(Errc::kFormat, "digests: missing or not an object");
  }
  for (const auto& [path, list] : digests->items()) {
    std::string where = "digests[\"" + printable(path, 128) + "\"]";
    if (!list.is_array()) return Error(Errc::kFormat, where + ": must be an array");
    if (path == "boot_aggregate") {
      report.warnings.emplace_back("boot_aggregate digests (host boot state) not imported");
      continue;
    }
    if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos ||
        path.size() > kMaxPathPatternLen) {
      return Error(Errc::kFormat, where + ": a path must be absolute");
    }
    for (const auto& item : list) {
      if (!item.is_string()) return Error(Errc::kFormat, where + ": digests must be strings");
      std::string hex = item.get<std::string>();
      std::transform(hex.begin(), hex.end(), hex.begin(),
                     [](char c) { return static_cast<char>(std::tolower(c)); });
      CTRUST_ASSIGN_OR_RETURN(crypto::Digest d, digest_from_hex(hex, std::nullopt, where));
      into.allow.push_back(Allow{d, {literal_pattern(path)}});
      ++report.digests;
    }
  }
  if (auto ex = doc.find("excludes"); ex != doc.end()) {
    if (!ex->is_array()) return Error(Errc::kFormat, "excludes: must be an array");
    for (const auto& item : *ex) {
      if (!item.is_string()) return Error(Errc::kFormat, "excludes: must hold strings");
      const auto& re = item.get_ref<const std::string&>();
      if (auto construct = python_only_regex(re); !construct.empty()) {
        report.warnings.push_back("exclude \"" + printable(re, 200) + "\" uses the Python regex " +
                                  construct +
                                  ", which POSIX extended regexes read differently; "
                                  "check the imported rule");
      }
      into.excludes.push_back(re);
      ++report.excludes;
    }
  }
  for (const char* key : {"keyrings", "ima-buf"}) {
    auto it = doc.find(key);
    if (it != doc.end() && it->is_object() && !it->empty()) {
      report.warnings.push_back(std::string(key) + " digests (" + std::to_string(it->size()) +
                                " names) not imported: ctrust policies judge files");
    }
  }
  if (auto vk = doc.find("verification-keys");
      vk != doc.end() && vk->is_string() && !vk->get<std::string>().empty()) {
    report.warnings.emplace_back("verification-keys not imported: IMA signatures are not used");
  }
  auto n = normalize(into);
  if (!n) return std::move(n).error().with_context("imported Keylime policy");
  return report;
}

Result<std::string> export_keylime(const Policy& policy, bool skip_inexpressible,
                                   ExportReport& report) {
  std::map<std::string, std::vector<std::string>> digests;
  for (const Allow& a : policy.allow) {
    std::string d = std::string(crypto::hash_name(a.digest.alg)) + ":" + a.digest.hex();
    std::string problem;
    if (a.paths.empty()) problem = d + " is allowed at any path";
    std::vector<std::string> literals;
    for (const std::string& p : a.paths) {
      auto lit = pattern_literal(p);
      if (!lit) {
        problem = d;
        problem += " is allowed at the glob \"" + p + "\"";
        break;
      }
      literals.push_back(std::move(*lit));
    }
    if (!problem.empty()) {
      if (!skip_inexpressible) {
        return Error(Errc::kUnsupported,
                     problem +
                         ", which a Keylime policy cannot express without allowing "
                         "more; use --skip-inexpressible to leave such entries out");
      }
      report.skipped.push_back(problem);
      continue;
    }
    for (const std::string& l : literals) digests[l].push_back(a.digest.hex());
    ++report.digests;
  }
  json doc = {
      {"meta", {{"version", 1}, {"generator", 0}}},
      {"release", policy.serial},
      {"digests", json::object()},
      {"excludes", policy.excludes},
      {"keyrings", json::object()},
      {"ima-buf", json::object()},
      {"ima",
       {{"ignored_keyrings", json::array()}, {"log_hash_alg", "sha1"}, {"dm_policy", nullptr}}},
      {"verification-keys", ""},
  };
  for (auto& [path, list] : digests) {
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
    doc["digests"][path] = list;
  }
  try {
    return doc.dump(2) + "\n";
  } catch (const json::exception& e) {
    // Paths that are not UTF-8 cannot be written in JSON.
    return Error(Errc::kUnsupported, std::string("cannot write the Keylime policy: ") + e.what());
  }
}

Result<ImportReport> import_checksums(std::string_view text, std::optional<crypto::HashAlg> alg,
                                      std::string_view root, Policy& into) {
  ImportReport report;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    std::string where = "line " + std::to_string(line_no);
    if (line.empty() || line.front() == '#') continue;
    if (line.back() == '\r') {
      return Error(Errc::kFormat, where +
                                      ": ends in a carriage return (a Windows line "
                                      "ending?); convert the list with dos2unix");
    }
    bool escaped = line.front() == '\\';
    if (escaped) line.remove_prefix(1);
    std::size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp + 2 > line.size() ||
        (line[sp + 1] != ' ' && line[sp + 1] != '*')) {
      return Error(Errc::kFormat, where + R"(: expected "HEX  NAME" or "HEX *NAME")");
    }
    std::string hex(line.substr(0, sp));
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest d, digest_from_hex(hex, alg, where));
    for (char c : hex) {
      if (c >= 'A' && c <= 'F') {
        return Error(Errc::kFormat, where + ": digests are written in lower-case hex");
      }
    }
    std::string_view raw = line.substr(sp + 2);
    std::string name;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (escaped && raw[i] == '\\') {
        if (i + 1 == raw.size()) return Error(Errc::kFormat, where + ": dangling '\\'");
        char n = raw[++i];
        if (n == 'n') {
          name += '\n';
        } else if (n == '\\') {
          name += '\\';
        } else {
          return Error(Errc::kFormat, where + ": unknown escape \\" + std::string(1, n));
        }
      } else {
        name += raw[i];
      }
    }
    if (name.empty() || name.find('\0') != std::string::npos) {
      return Error(Errc::kFormat, where + ": empty file name");
    }
    if (name[0] != '/') {
      if (name.rfind("./", 0) == 0) name.erase(0, 2);
      std::string base(root);
      if (base.empty() || base.back() != '/') base += '/';
      name.insert(0, base);
    }
    if (name.size() > kMaxPathPatternLen) {
      return Error(Errc::kLimit, where + ": file name longer than " +
                                     std::to_string(kMaxPathPatternLen) + " bytes");
    }
    into.allow.push_back(Allow{d, {literal_pattern(name)}});
    ++report.digests;
  }
  auto n = normalize(into);
  if (!n) return std::move(n).error().with_context("imported checksum list");
  return report;
}

}  // namespace ctrust::policy
