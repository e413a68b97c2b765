// Keylime runtime policies, sha256sum lists and policies created from an image tree.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "image/manifest.h"
#include "policy/compiled.h"
#include "policy/interop.h"
#include "policy/test_util.h"
#include "support/temp_dir.h"
#include "util/file.h"

namespace ctrust::policy {
namespace {

using crypto::Digest;
using crypto::HashAlg;
using nlohmann::json;
using testing::digest_of;
using testing::digest_text;

Policy header() {
  Policy p;
  p.name = "imported";
  p.issuer = "tests";
  p.not_before = testing::kJan2026;
  p.not_after = testing::kJan2027;
  return p;
}

// digest text -> sorted paths, the comparable content of an allow list.
std::map<std::string, std::vector<std::string>> allow_set(const Policy& p) {
  std::map<std::string, std::vector<std::string>> out;
  for (const Allow& a : p.allow) out[digest_text(a.digest)] = a.paths;
  return out;
}

bool has_warning(const ImportReport& r, const std::string& part) {
  for (const auto& w : r.warnings) {
    if (w.find(part) != std::string::npos) return true;
  }
  return false;
}

std::string run(const std::string& command) {
  std::string out;
  FILE* f = ::popen(command.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  ::pclose(f);
  return out;
}

// ---- Keylime ------------------------------------------------------------------------------

Policy literal_policy() {
  Policy p = header();
  p.serial = 12;
  p.allow.push_back({digest_of("sh"), {"/bin/sh", "/usr/bin/sh"}});
  p.allow.push_back(
      {digest_of("odd"), {literal_pattern("/opt/we*rd [1]?"), literal_pattern("/a\\b")}});
  p.allow.push_back({digest_of("old", HashAlg::kSha1), {"/bin/old"}});
  p.allow.push_back({digest_of("big", HashAlg::kSha384), {"/bin/big"}});
  p.allow.push_back({digest_of("huge", HashAlg::kSha512), {"/bin/sh"}});
  p.excludes = {"/tmp/", "/var/log/.*"};
  EXPECT_TRUE(normalize(p).ok());
  return p;
}

TEST(Keylime, ExportImportRoundTrip) {
  Policy p = literal_policy();
  ExportReport er;
  auto text = export_keylime(p, false, er);
  ASSERT_TRUE(text.ok()) << text.error().message();
  EXPECT_EQ(er.digests, p.allow.size());
  EXPECT_TRUE(er.skipped.empty());
  // The document is what Keylime reads: version 1, per-path lists of bare hex digests.
  json doc = json::parse(*text);
  EXPECT_EQ(doc["meta"]["version"], 1);
  EXPECT_EQ(doc["release"], 12);
  EXPECT_EQ(doc["digests"]["/bin/sh"].size(), 2u);  // sha256 and sha512 at one path
  EXPECT_EQ(doc["digests"]["/opt/we*rd [1]?"], json::array({digest_of("odd").hex()}));
  EXPECT_TRUE(doc["digests"].contains("/a\\b"));
  EXPECT_EQ(doc["excludes"], json::array({"/tmp/", "/var/log/.*"}));

  Policy back = header();
  auto ir = import_keylime(*text, back);
  ASSERT_TRUE(ir.ok()) << ir.error().message();
  EXPECT_EQ(ir->digests, 7u);  // one per (path, digest) pair
  EXPECT_EQ(ir->excludes, 2u);
  EXPECT_TRUE(ir->warnings.empty()) << ir->warnings.front();
  EXPECT_EQ(allow_set(back), allow_set(p));
  EXPECT_EQ(back.excludes, p.excludes);
  // The header of `into` is untouched.
  EXPECT_EQ(back.name, "imported");
  EXPECT_EQ(back.serial, 1u);
  // And the imported names are literal: the glob characters match only themselves.
  CompiledPolicy c = *CompiledPolicy::compile(back);
  EXPECT_EQ(c.check(digest_of("odd"), "/opt/we*rd [1]?"), Verdict::kAllowed);
  EXPECT_EQ(c.check(digest_of("odd"), "/opt/weird [1]x"), Verdict::kWrongPath);
}

TEST(Keylime, InexpressibleEntries) {
  Policy p = literal_policy();
  p.allow.push_back({digest_of("anywhere"), {}});
  p.allow.push_back({digest_of("globbed"), {"/usr/lib/*.so", "/lib/x"}});
  ASSERT_TRUE(normalize(p).ok());
  ExportReport er;
  auto strict = export_keylime(p, false, er);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.error().message().find("--skip-inexpressible"), std::string::npos)
      << strict.error().message();
  ExportReport skipped;
  auto text = export_keylime(p, true, skipped);
  ASSERT_TRUE(text.ok()) << text.error().message();
  ASSERT_EQ(skipped.skipped.size(), 2u);
  EXPECT_EQ(skipped.digests, p.allow.size() - 2);
  std::string all = skipped.skipped[0] + "\n" + skipped.skipped[1];
  EXPECT_NE(all.find(digest_text(digest_of("anywhere")) + " is allowed at any path"),
            std::string::npos)
      << all;
  EXPECT_NE(
      all.find(digest_text(digest_of("globbed")) + " is allowed at the glob \"/usr/lib/*.so\""),
      std::string::npos)
      << all;
  // Nothing of a skipped entry is written, not even its literal paths.
  EXPECT_EQ(text->find(digest_of("anywhere").hex()), std::string::npos);
  EXPECT_EQ(text->find(digest_of("globbed").hex()), std::string::npos);
  EXPECT_EQ(json::parse(*text)["digests"].count("/lib/x"), 0u);
}

TEST(Keylime, ExportOfNonUtf8PathIsAnErrorNotACrash) {
  Policy p = header();
  p.allow.push_back({digest_of("x"), {"/bin/\xff"}});
  // Either such a path never makes it into a policy, or it cannot be exported.
  if (auto n = normalize(p); !n.ok()) {
    EXPECT_NE(n.error().message().find("UTF-8"), std::string::npos) << n.error().message();
    return;
  }
  ExportReport er;
  auto text = export_keylime(p, false, er);
  EXPECT_FALSE(text.ok());
}

TEST(Keylime, ImportWarnings) {
  std::string sha = digest_of("sh").hex();
  json doc = {
      {"meta", {{"version", 1}}},
      {"release", 0},
      {"digests", {{"boot_aggregate", {std::string(40, '0')}}, {"/bin/sh", {sha}}}},
      {"excludes", json::array()},
      {"keyrings", {{".ima", {sha}}}},
      {"ima-buf", {{"kernel_cmdline", {sha}}, {"dm_table", {sha}}}},
      {"verification-keys", "[{\"key\": 1}]"},
      {"something-new", 1},
  };
  Policy p = header();
  auto r = import_keylime(doc.dump(), p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->digests, 1u);
  EXPECT_TRUE(has_warning(*r, "boot_aggregate"));
  EXPECT_TRUE(has_warning(*r, "keyrings digests (1 names) not imported"));
  EXPECT_TRUE(has_warning(*r, "ima-buf digests (2 names) not imported"));
  EXPECT_TRUE(has_warning(*r, "verification-keys"));
  EXPECT_TRUE(has_warning(*r, "unknown member \"something-new\""));
  EXPECT_EQ(r->warnings.size(), 5u);
  ASSERT_EQ(p.allow.size(), 1u);
  EXPECT_EQ(p.allow[0].paths, std::vector<std::string>{"/bin/sh"});
  // Empty keyrings and ima-buf sections are not worth a warning.
  json quiet = {{"meta", {{"version", 1}}},
                {"digests", {{"/bin/sh", {sha}}}},
                {"keyrings", json::object()},
                {"ima-buf", json::object()},
                {"verification-keys", ""}};
  Policy q = header();
  auto r2 = import_keylime(quiet.dump(), q);
  ASSERT_TRUE(r2.ok());
  EXPECT_TRUE(r2->warnings.empty());
}

TEST(Keylime, PythonOnlyExcludesAreWarnedAbout) {
  std::string sha = digest_of("sh").hex();
  json excludes =
      json::array({"/tmp/.*", "/var/log/[a-z]+\\.log", "/proc/\\d+/", "/srv/.*?x", "/a\\\\d"});
  json doc = {
      {"meta", {{"version", 1}}}, {"digests", {{"/bin/sh", {sha}}}}, {"excludes", excludes}};
  Policy p = header();
  auto r = import_keylime(doc.dump(), p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->excludes, 5u);
  std::string all;
  for (const auto& w : r->warnings) all += w + "\n";
  EXPECT_TRUE(has_warning(*r, "uses the Python regex escape \\d")) << all;
  EXPECT_TRUE(has_warning(*r, "lazy quantifier \"*?\"")) << all;
  // The common subset, and an escaped backslash followed by d, are not warned about.
  EXPECT_EQ(r->warnings.size(), 2u) << all;
  // A Python group "(?:...)" is not a POSIX regex at all: refused.
  json bad = {{"meta", {{"version", 1}}},
              {"digests", {{"/bin/sh", {sha}}}},
              {"excludes", json::array({"/run/(?:a|b)/"})}};
  Policy q = header();
  auto r2 = import_keylime(bad.dump(), q);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error().message().find("not a POSIX extended regular expression"),
            std::string::npos);
}

TEST(Keylime, UpperCaseHexIsNormalized) {
  std::string hex = digest_of("sh").hex();
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  json doc = {{"meta", {{"version", 1}}}, {"digests", {{"/bin/sh", {upper}}}}};
  Policy p = header();
  auto r = import_keylime(doc.dump(), p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_EQ(p.allow.size(), 1u);
  EXPECT_EQ(p.allow[0].digest, digest_of("sh"));
}

TEST(Keylime, MalformedDocumentsAreRejected) {
  std::string sha = digest_of("sh").hex();
  struct Case {
    std::string text;
    std::string part;
  };
  std::vector<Case> cases = {
      {"", "malformed JSON"},
      {"[]", "JSON object"},
      {R"({"digests": {}})", "version 1"},
      {R"({"meta": {"version": 2}, "digests": {}})", "version 1"},
      {R"({"meta": {"version": "1"}, "digests": {}})", "version 1"},
      {R"({"meta": 1, "digests": {}})", "version 1"},
      {R"({"meta": {"version": 1}})", "digests"},
      {R"({"meta": {"version": 1}, "digests": []})", "digests"},
      {R"({"meta": {"version": 1}, "digests": {"/bin/sh": ")" + sha + R"("}})", "must be an array"},
      {R"({"meta": {"version": 1}, "digests": {"/bin/sh": [1]}})", "must be strings"},
      {R"({"meta": {"version": 1}, "digests": {"bin/sh": [")" + sha + R"("]}})", "absolute"},
      {R"({"meta": {"version": 1}, "digests": {"": [")" + sha + R"("]}})", "absolute"},
      {R"({"meta": {"version": 1}, "digests": {"/bin/sh": [")" + sha.substr(2) + R"("]}})",
       "hex digest"},
      {R"({"meta": {"version": 1}, "digests": {"/bin/sh": ["zz)" + sha.substr(2) + R"("]}})",
       "/bin/sh"},
      {R"({"meta": {"version": 1}, "digests": {"/bin/sh": [], "/bin/sh": []}})", "duplicate key"},
      {R"({"meta": {"version": 1}, "meta": {"version": 1}, "digests": {}})", "duplicate key"},
      {R"({"meta": {"version": 1}, "digests": {}, "excludes": "/tmp"})", "excludes"},
      {R"({"meta": {"version": 1}, "digests": {}, "excludes": [1]})", "excludes"},
      {R"({"meta": {"version": 1}, "digests": {}, "excludes": ["("]})", "exclude"},
      {R"({"meta": {"version": 1}, "digests": {"/a\u0000b": []}})", "absolute"},
      {R"({"meta": {"version": 1}, "digests": {}, "x": )" + std::string(10000, '[') + "}",
       "nesting"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text.substr(0, 120));
    Policy p = header();
    auto r = import_keylime(c.text, p);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find(c.part), std::string::npos) << r.error().message();
  }
}

// ---- sha256sum lists ------------------------------------------------------------------------

TEST(Checksums, NormalBinaryMarkerAndComments) {
  std::string a = digest_of("a").hex(), b = digest_of("b").hex();
  std::string s1 = digest_of("c", HashAlg::kSha1).hex();
  std::string text = "# made by hand\n\n" + a + "  /bin/a\n" + b + " */bin/b with space\n" + s1 +
                     "  /bin/c";  // no final newline
  Policy p = header();
  auto r = import_checksums(text, std::nullopt, "/", p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->digests, 3u);
  auto set = allow_set(p);
  EXPECT_EQ(set["sha256:" + a], std::vector<std::string>{"/bin/a"});
  EXPECT_EQ(set["sha256:" + b], std::vector<std::string>{"/bin/b with space"});
  EXPECT_EQ(set["sha1:" + s1], std::vector<std::string>{"/bin/c"});
  EXPECT_EQ(p.name, "imported");
}

TEST(Checksums, EscapedNames) {
  std::string a = digest_of("a").hex(), b = digest_of("b").hex(), c = digest_of("c").hex();
  std::string text =
      "\\" + a + "  /new\\nline\n" + "\\" + b + "  /back\\\\slash\n" + c + "  /raw\\name\n";
  Policy p = header();
  auto r = import_checksums(text, std::nullopt, "/", p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  CompiledPolicy compiled = *CompiledPolicy::compile(p);
  EXPECT_EQ(compiled.check(digest_of("a"), "/new\nline"), Verdict::kAllowed);
  EXPECT_EQ(compiled.check(digest_of("b"), "/back\\slash"), Verdict::kAllowed);
  // Without the leading '\' a backslash is part of the name.
  EXPECT_EQ(compiled.check(digest_of("c"), "/raw\\name"), Verdict::kAllowed);
  Policy bad = header();
  auto unknown = import_checksums("\\" + a + "  /x\\t\n", std::nullopt, "/", bad);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message().find("line 1"), std::string::npos);
  auto dangling = import_checksums("\\" + a + "  /x\\\n", std::nullopt, "/", bad);
  ASSERT_FALSE(dangling.ok());
  EXPECT_NE(dangling.error().message().find("dangling"), std::string::npos);
}

TEST(Checksums, RelativeNamesUnderRoot) {
  std::string a = digest_of("a").hex(), b = digest_of("b").hex(), c = digest_of("c").hex();
  std::string text = a + "  bin/a\n" + b + "  ./bin/b\n" + c + "  /abs/c\n";
  for (const std::string& root : {std::string("/srv/root"), std::string("/srv/root/")}) {
    Policy p = header();
    auto r = import_checksums(text, std::nullopt, root, p);
    ASSERT_TRUE(r.ok()) << r.error().message();
    auto set = allow_set(p);
    EXPECT_EQ(set["sha256:" + a], std::vector<std::string>{"/srv/root/bin/a"});
    EXPECT_EQ(set["sha256:" + b], std::vector<std::string>{"/srv/root/bin/b"});
    EXPECT_EQ(set["sha256:" + c], std::vector<std::string>{"/abs/c"});
  }
  Policy p = header();
  ASSERT_TRUE(import_checksums(text, std::nullopt, "/", p).ok());
  EXPECT_EQ(allow_set(p)["sha256:" + a], std::vector<std::string>{"/bin/a"});
}

TEST(Checksums, BadLinesNameTheirLine) {
  std::string a = digest_of("a").hex();
  std::string upper = a;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  struct Case {
    std::string text;
    std::string part;
  };
  std::vector<Case> cases = {
      {a + "  /ok\n" + upper + "  /bin/x\n", "line 2: digests are written in lower-case hex"},
      {a + "  /ok\n\n" + "garbage\n", "line 3: expected \"HEX  NAME\""},
      {a + " /one-space\n", "line 1: expected"},
      {a + "  \n", "line 1: empty file name"},
      {a.substr(1) + "  /odd\n", "line 1"},
      {a.substr(0, 60) + "  /short\n", "line 1"},
      {std::string(64, 'g') + "  /nothex\n", "line 1"},
      {"# c\n" + a + "\t/tab\n", "line 2"},
      {a + "  /ok\n" + a + "  /bin/true\r\n", "line 2: ends in a carriage return"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    Policy p = header();
    auto r = import_checksums(c.text, std::nullopt, "/", p);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find(c.part), std::string::npos) << r.error().message();
  }
  // A digest of the wrong length for the given algorithm.
  Policy p = header();
  auto r = import_checksums(a + "  /x\n", HashAlg::kSha512, "/", p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("line 1"), std::string::npos);
  auto ok = import_checksums(a + "  /x\n", HashAlg::kSha256, "/", p);
  EXPECT_TRUE(ok.ok());
}

TEST(Checksums, RealSha256sumOutput) {
  ctrust::testing::TempDir tmp;
  std::string dir = tmp.file("tree");
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, std::string>> files = {
      {"plain", "plain contents"},       {"with space", "spaced"},
      {"new\nline", "newline contents"}, {"back\\slash", "backslash contents"},
      {"star*q?[x]", "glob chars"},
  };
  for (const auto& [name, content] : files) {
    ASSERT_TRUE(write_file_atomic(dir + "/" + name, as_bytes(content), 0644).ok());
  }
  std::string listing = run("cd '" + dir + "' && sha256sum -- * ");
  ASSERT_FALSE(listing.empty()) << "sha256sum did not run";
  std::string binary_listing = run("cd '" + dir + "' && sha256sum -b -- * ");
  for (const std::string& text : {listing, binary_listing}) {
    Policy p = header();
    auto r = import_checksums(text, std::nullopt, "/img", p);
    ASSERT_TRUE(r.ok()) << r.error().message() << "\n" << text;
    EXPECT_EQ(r->digests, files.size());
    CompiledPolicy c = *CompiledPolicy::compile(p);
    for (const auto& [name, content] : files) {
      EXPECT_EQ(c.check(digest_of(content), "/img/" + name), Verdict::kAllowed) << name;
    }
  }
}

// ---- create from an image tree ----------------------------------------------------------------

class CreateFromTree : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(root_ + "/bin");
    std::filesystem::create_directories(root_ + "/lib");
    std::filesystem::create_directories(root_ + "/etc");
    std::filesystem::create_directories(root_ + "/tmp/cache");
    const char* elf = ::access("/bin/busybox", R_OK) == 0 ? "/bin/busybox" : "/bin/true";
    copy(elf, "/bin/tool", 0755);
    copy("/bin/true", "/lib/libfake.so", 0644);  // ELF, not executable
    copy("/bin/true", "/tmp/cache/helper", 0755);
    write("/bin/run.sh", "#!/bin/sh\necho hi\n", 0755);
    write("/bin/odd*name", "#!/bin/sh\nexit 0\n", 0755);
    write("/etc/config", "key=value\n", 0644);
    write("/etc/exec-data", "not elf, not script", 0755);
    ASSERT_EQ(::symlink("tool", (root_ + "/bin/sh").c_str()), 0);
  }
  void write(const std::string& rel, std::string_view data, mode_t mode) {
    ASSERT_TRUE(write_file_atomic(root_ + rel, as_bytes(data), mode).ok());
    ASSERT_EQ(::chmod((root_ + rel).c_str(), mode), 0);
  }
  void copy(const std::string& from, const std::string& rel, mode_t mode) {
    auto data = read_file(from, 64u << 20);
    ASSERT_TRUE(data.ok());
    ASSERT_TRUE(write_file_atomic(root_ + rel, *data, mode).ok());
    ASSERT_EQ(::chmod((root_ + rel).c_str(), mode), 0);
  }
  image::Manifest manifest(HashAlg alg = HashAlg::kSha256) {
    image::ManifestOptions o;
    o.content_digest = alg;
    auto m = image::manifest_from_directory(root_, o);
    EXPECT_TRUE(m.ok()) << m.error().message();
    return std::move(*m);
  }
  // path -> digest of what was listed
  std::map<std::string, Digest> listed(const Policy& p) {
    std::map<std::string, Digest> out;
    for (const Allow& a : p.allow) {
      for (const auto& path : a.paths) out[*pattern_literal(path)] = a.digest;
    }
    return out;
  }
  Digest file_digest(const std::string& rel, HashAlg alg = HashAlg::kSha256) {
    auto d = crypto::digest_file(alg, root_ + rel);
    EXPECT_TRUE(d.ok());
    return *d;
  }

  ctrust::testing::TempDir tmp_;
  std::string root_ = tmp_.file("rootfs");
};

TEST_F(CreateFromTree, DefaultListsElfFilesAndScripts) {
  Policy p = header();
  auto r = add_from_manifest(manifest(), {}, p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->files, 7u);
  EXPECT_EQ(r->listed, 5u);
  EXPECT_EQ(r->excluded, 0u);
  auto l = listed(p);
  std::set<std::string> names;
  for (const auto& [k, v] : l) names.insert(k);
  EXPECT_EQ(names, (std::set<std::string>{"/bin/odd*name", "/bin/run.sh", "/bin/tool",
                                          "/lib/libfake.so", "/tmp/cache/helper"}));
  for (const auto& [path, d] : l) EXPECT_EQ(d, file_digest(path)) << path;
  // Every entry is tied to its literal path: "odd*name" is escaped.
  for (const Allow& a : p.allow) {
    for (const auto& path : a.paths) {
      if (path.find("odd") != std::string::npos) {
        EXPECT_EQ(path, "/bin/odd\\*name");
      }
    }
  }
  EXPECT_TRUE(p.excludes.empty());
  CompiledPolicy c = *CompiledPolicy::compile(p);
  EXPECT_EQ(c.check(file_digest("/bin/tool"), "/bin/tool"), Verdict::kAllowed);
  EXPECT_EQ(c.check(file_digest("/bin/tool"), "/bin/sh"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(file_digest("/etc/config"), "/etc/config"), Verdict::kUnknownDigest);
}

TEST_F(CreateFromTree, ContentDigestsMatchSha256sum) {
  image::Manifest m = manifest();
  std::size_t checked = 0;
  for (const auto& e : m.entries) {
    if (e.type != image::FileType::kRegular) continue;
    ASSERT_TRUE(e.content.has_value()) << e.path;
    if (e.path.find('*') != std::string::npos) continue;  // keep the shell command simple
    std::string out = run("sha256sum '" + root_ + e.path + "'");
    ASSERT_GE(out.size(), 64u);
    EXPECT_EQ(out.substr(0, 64), e.content->hex()) << e.path;
    EXPECT_EQ(*e.content, file_digest(e.path));
    ++checked;
  }
  EXPECT_EQ(checked, 6u);
  // With another algorithm, too.
  for (const auto& e : manifest(HashAlg::kSha512).entries) {
    if (e.type == image::FileType::kRegular) {
      EXPECT_EQ(*e.content, file_digest(e.path, HashAlg::kSha512)) << e.path;
    }
  }
}

TEST_F(CreateFromTree, AllListsEveryRegularFile) {
  Policy p = header();
  CreateOptions o;
  o.all = true;
  auto r = add_from_manifest(manifest(), o, p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->files, 7u);
  EXPECT_EQ(r->listed, 7u);
  auto l = listed(p);
  EXPECT_EQ(l.size(), 7u);
  EXPECT_EQ(l["/etc/config"], file_digest("/etc/config"));
  EXPECT_EQ(l["/etc/exec-data"], file_digest("/etc/exec-data"));
  EXPECT_EQ(l.count("/bin/sh"), 0u);  // a symlink is not a file of its own
}

TEST_F(CreateFromTree, ExecOnlyDropsNonExecutableFiles) {
  Policy p = header();
  CreateOptions o;
  o.exec_only = true;
  auto r = add_from_manifest(manifest(), o, p);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->listed, 4u);
  EXPECT_EQ(listed(p).count("/lib/libfake.so"), 0u);
  EXPECT_EQ(listed(p).count("/bin/tool"), 1u);
  // --all --exec-only: every file with an execute bit, whatever it holds.
  Policy q = header();
  o.all = true;
  r = add_from_manifest(manifest(), o, q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->listed, 5u);
  EXPECT_EQ(listed(q).count("/etc/exec-data"), 1u);
  EXPECT_EQ(listed(q).count("/etc/config"), 0u);
}

TEST_F(CreateFromTree, ExcludesSkipAndAreRecorded) {
  Policy p = header();
  CreateOptions o;
  o.excludes = {"/tmp/", "/lib/lib[a-z]+\\.so"};
  auto r = add_from_manifest(manifest(), o, p);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->excluded, 2u);
  EXPECT_EQ(r->listed, 3u);
  EXPECT_EQ(listed(p).count("/tmp/cache/helper"), 0u);
  EXPECT_EQ(listed(p).count("/lib/libfake.so"), 0u);
  EXPECT_EQ(p.excludes, (std::vector<std::string>{"/lib/lib[a-z]+\\.so", "/tmp/"}));
  CompiledPolicy c = *CompiledPolicy::compile(p);
  EXPECT_EQ(c.check(digest_of("anything"), "/tmp/cache/helper"), Verdict::kExcluded);
  // A bad exclude is an error, and so is a manifest without content digests.
  Policy q = header();
  o.excludes = {"("};
  EXPECT_FALSE(add_from_manifest(manifest(), o, q).ok());
  image::Manifest plain = *image::manifest_from_directory(root_, {});
  auto no_content = add_from_manifest(plain, {}, q);
  ASSERT_FALSE(no_content.ok());
  EXPECT_NE(no_content.error().message().find("content digests"), std::string::npos);
}

TEST_F(CreateFromTree, AddingToAPolicyMergesEqualDigests) {
  // /bin/true copied twice (as a library and a helper) is one digest with two paths.
  Policy p = header();
  auto r = add_from_manifest(manifest(), {}, p);
  ASSERT_TRUE(r.ok());
  Digest t = file_digest("/lib/libfake.so");
  bool found = false;
  for (const Allow& a : p.allow) {
    if (a.digest == t) {
      found = true;
      EXPECT_EQ(a.paths, (std::vector<std::string>{"/lib/libfake.so", "/tmp/cache/helper"}));
    }
  }
  EXPECT_TRUE(found);
  // tool (busybox, or /bin/true itself where busybox is missing), run.sh, odd*name.
  std::size_t want = file_digest("/bin/tool") == t ? 3u : 4u;
  EXPECT_EQ(p.allow.size(), want);
}

}  // namespace
}  // namespace ctrust::policy
