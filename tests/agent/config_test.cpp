#include "agent/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "support/temp_dir.h"

namespace ctrust::agent {
namespace {

constexpr const char* kOrigin = "ctrustd.toml";

TEST(AgentConfig, EmptyTextGivesTheDefaults) {
  for (const char* text : {"", "\n", "# only a comment\n", "  \n\t\n"}) {
    auto c = parse_config(text, kOrigin);
    ASSERT_TRUE(c) << c.error().message();
    AgentConfig d;
    EXPECT_EQ(c->state_dir, "/var/lib/ctrust");
    EXPECT_EQ(c->socket, kDefaultSocket);
    EXPECT_EQ(c->log_level, "info");
    EXPECT_EQ(c->host_tcti, "embedded");
    EXPECT_EQ(c->host_pcr, 13U);
    EXPECT_EQ(c->default_mode, policy::Mode::kMeasure);
    EXPECT_EQ(c->default_policy, "");
    EXPECT_FALSE(c->annotations_may_weaken);
    EXPECT_TRUE(c->bpf);
    EXPECT_TRUE(c->kill_unvouched);
    EXPECT_EQ(c->policy_dir, "");
    EXPECT_TRUE(c->policy_trust.empty());
    EXPECT_FALSE(c->allow_unsigned_policies);
    EXPECT_EQ(c->vtpm_pool, d.vtpm_pool);
    EXPECT_EQ(c->vtpm_max, d.vtpm_max);
    EXPECT_TRUE(c->vtpm_archive);
    EXPECT_EQ(c->hash_threads, d.hash_threads);
    EXPECT_EQ(c->cache_entries, d.cache_entries);
    EXPECT_EQ(c->image_cache_entries, d.image_cache_entries);
    EXPECT_EQ(c->policies(), "/var/lib/ctrust/policies");
    EXPECT_EQ(c->vtpm_root(), "/var/lib/ctrust/vtpm");
  }
}

// deploy/ctrustd.toml documents the defaults: it must parse to exactly them.
TEST(AgentConfig, TheShippedConfigFileIsTheDefaults) {
  auto c = load_config(std::string(CTRUST_TEST_DATA_DIR) + "/../../deploy/ctrustd.toml", true);
  ASSERT_TRUE(c) << c.error().message();
  AgentConfig d;
  EXPECT_EQ(c->state_dir, d.state_dir);
  EXPECT_EQ(c->socket, d.socket);
  EXPECT_EQ(c->log_level, d.log_level);
  EXPECT_EQ(c->host_tcti, d.host_tcti);
  EXPECT_EQ(c->host_pcr, d.host_pcr);
  EXPECT_EQ(c->default_mode, d.default_mode);
  EXPECT_EQ(c->default_policy, d.default_policy);
  EXPECT_EQ(c->annotations_may_weaken, d.annotations_may_weaken);
  EXPECT_EQ(c->policy_dir, d.policy_dir);
  EXPECT_EQ(c->policy_trust, d.policy_trust);
  EXPECT_EQ(c->allow_unsigned_policies, d.allow_unsigned_policies);
  EXPECT_EQ(c->vtpm_pool, d.vtpm_pool);
  EXPECT_EQ(c->vtpm_max, d.vtpm_max);
  EXPECT_EQ(c->vtpm_archive, d.vtpm_archive);
  EXPECT_EQ(c->hash_threads, d.hash_threads);
  EXPECT_EQ(c->cache_entries, d.cache_entries);
  EXPECT_EQ(c->bpf, d.bpf);
  EXPECT_EQ(c->kill_unvouched, d.kill_unvouched);
  EXPECT_EQ(c->backend, d.backend);
  EXPECT_EQ(c->discover, d.discover);
  EXPECT_EQ(c->runtime_roots, d.runtime_roots);
  EXPECT_EQ(c->discover_unknown, d.discover_unknown);
}

TEST(AgentConfig, Discovery) {
  auto d = parse_config("", kOrigin);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->discover.empty()) << "off unless asked for";
  EXPECT_EQ(d->discover_unknown, "refuse");
  EXPECT_FALSE(d->runtime_roots.empty());
  auto c = parse_config(
      "[containers]\ndiscover = [\"/kubepods.slice\", \"/ctrust-test\"]\n"
      "runtime_roots = [\"/srv/runc\"]\ndiscover_unknown = \"admit\"\n",
      kOrigin);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->discover, (std::vector<std::string>{"/kubepods.slice", "/ctrust-test"}));
  EXPECT_EQ(c->runtime_roots, std::vector<std::string>{"/srv/runc"});
  EXPECT_EQ(c->discover_unknown, "admit");
  for (const char* bad : {
           "containers.discover = [\"kubepods.slice\"]\n",
           "containers.discover = [\"/a/../b\"]\n",
           "containers.runtime_roots = [\"run/runc\"]\n",
           "containers.discover_unknown = \"allow\"\n",
           "containers.discover = [\"/k\"]\nenforcement.bpf = false\n",
       }) {
    auto r = parse_config(bad, kOrigin);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message().find("containers."), std::string::npos) << r.error().message();
  }
}

TEST(AgentConfig, TheEnforcementBackend) {
  EXPECT_EQ(parse_config("", kOrigin)->backend, "auto");
  for (const char* b : {"auto", "bpf-lsm", "fanotify"}) {
    auto c = parse_config(std::string("enforcement.backend = \"") + b + "\"\n", kOrigin);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->backend, b);
  }
  auto bad = parse_config("enforcement.backend = \"lsm\"\n", kOrigin);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("enforcement.backend"), std::string::npos);
  auto no_bpf = parse_config("[enforcement]\nbpf = false\nbackend = \"bpf-lsm\"\n", kOrigin);
  ASSERT_FALSE(no_bpf) << "bpf-lsm without the BPF programs";
  EXPECT_TRUE(parse_config("[enforcement]\nbpf = false\nbackend = \"auto\"\n", kOrigin));
}

TEST(AgentConfig, ParsesEveryDocumentedKey) {
  auto c = parse_config(R"(
state_dir = "/srv/ctrust"
socket = "/run/ct/agent.sock"
log_level = "debug"

[host_tpm]
tcti = "device:/dev/tpmrm0"
pcr = 14

[containers]
default_mode = "enforce"
default_policy = "base"
annotations_may_weaken = true

[policies]
dir = "/etc/ctrust/policies"
trust = ["/etc/ctrust/a.pem", "/etc/ctrust/b.pem"]
allow_unsigned = true

[vtpm]
pool = 0
max = 4096
archive_on_destroy = false

[enforcement]
hash_threads = 8
cache_entries = 1048576
image_cache_entries = 0
bpf = false
kill_unvouched = false
)",
                        kOrigin);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->state_dir, "/srv/ctrust");
  EXPECT_EQ(c->socket, "/run/ct/agent.sock");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->host_tcti, "device:/dev/tpmrm0");
  EXPECT_EQ(c->host_pcr, 14U);
  EXPECT_EQ(c->default_mode, policy::Mode::kEnforce);
  EXPECT_EQ(c->default_policy, "base");
  EXPECT_TRUE(c->annotations_may_weaken);
  EXPECT_EQ(c->policy_dir, "/etc/ctrust/policies");
  EXPECT_EQ(c->policies(), "/etc/ctrust/policies");
  EXPECT_EQ(c->policy_trust, (std::vector<std::string>{"/etc/ctrust/a.pem", "/etc/ctrust/b.pem"}));
  EXPECT_TRUE(c->allow_unsigned_policies);
  EXPECT_EQ(c->vtpm_pool, 0U);
  EXPECT_EQ(c->vtpm_max, 4096U);
  EXPECT_FALSE(c->vtpm_archive);
  EXPECT_EQ(c->hash_threads, 8U);
  EXPECT_EQ(c->cache_entries, std::size_t{1} << 20);
  EXPECT_EQ(c->image_cache_entries, 0U);
  EXPECT_FALSE(c->bpf);
  EXPECT_FALSE(c->kill_unvouched);
  EXPECT_EQ(c->vtpm_root(), "/srv/ctrust/vtpm");
  EXPECT_EQ(c->containers_dir(), "/srv/ctrust/containers");
}

TEST(AgentConfig, AcceptsEveryModeAndLevelAndDottedKeys) {
  const std::pair<const char*, policy::Mode> modes[] = {{"off", policy::Mode::kOff},
                                                        {"measure", policy::Mode::kMeasure},
                                                        {"audit", policy::Mode::kAudit},
                                                        {"enforce", policy::Mode::kEnforce}};
  for (const auto& [name, mode] : modes) {
    auto c = parse_config(std::string("containers.default_mode = \"") + name + "\"\n", kOrigin);
    ASSERT_TRUE(c) << name << ": " << c.error().message();
    EXPECT_EQ(c->default_mode, mode);
  }
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    auto c = parse_config(std::string("log_level = '") + level + "'\n", kOrigin);
    ASSERT_TRUE(c) << level << ": " << c.error().message();
    EXPECT_EQ(c->log_level, level);
  }
  // Inline tables are tables too; the bounds are inclusive.
  auto c = parse_config("host_tpm = { pcr = 23 }\nvtpm = { pool = 64, max = 1 }\n", kOrigin);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->host_pcr, 23U);
  EXPECT_EQ(c->vtpm_pool, 64U);
  EXPECT_EQ(c->vtpm_max, 1U);
  EXPECT_TRUE(parse_config("policies.trust = []\n", kOrigin));
}

struct Bad {
  const char* text;
  std::vector<const char*> says;  // substrings of the error message
};

void expect_errors(const std::vector<Bad>& cases) {
  for (const auto& c : cases) {
    auto config = parse_config(c.text, kOrigin);
    ASSERT_FALSE(config) << c.text;
    EXPECT_EQ(config.error().code(), Errc::kFormat) << c.text;
    const std::string& message = config.error().message();
    EXPECT_EQ(message.rfind(kOrigin, 0), 0U) << c.text << " -> " << message;
    for (const char* s : c.says) {
      EXPECT_NE(message.find(s), std::string::npos) << c.text << " -> " << message;
    }
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

TEST(AgentConfig, RefusesUnknownKeysNamingThem) {
  expect_errors({
      {"statedir = \"/x\"\n", {"unknown key statedir"}},
      {"[host_tpm]\npcrs = 13\n", {"unknown key host_tpm.pcrs"}},
      {"[containers]\ndefault_mod = \"enforce\"\n", {"unknown key containers.default_mod"}},
      {"[policies]\ntrusted = []\n", {"unknown key policies.trusted"}},
      {"[vtpm]\narchive = true\n", {"unknown key vtpm.archive"}},
      {"[enforcement]\nthreads = 2\n", {"unknown key enforcement.threads"}},
      {"[containers.extra]\nx = 1\n", {"unknown key containers.extra"}},
      {"[hosttpm]\npcr = 13\n", {"unknown key hosttpm"}},
  });
}

TEST(AgentConfig, RefusesWrongTypesNamingTheKey) {
  expect_errors({
      {"state_dir = 1\n", {"state_dir", "a string"}},
      {"socket = true\n", {"socket", "a string"}},
      {"log_level = [\"info\"]\n", {"log_level", "a string"}},
      {"[host_tpm]\ntcti = 0\n", {"host_tpm.tcti", "a string"}},
      {"[host_tpm]\npcr = \"13\"\n", {"host_tpm.pcr", "an integer"}},
      {"[host_tpm]\npcr = 13.0\n", {"host_tpm.pcr", "an integer"}},
      {"[containers]\nannotations_may_weaken = \"yes\"\n",
       {"containers.annotations_may_weaken", "true or false"}},
      {"[enforcement]\nbpf = 1\n", {"enforcement.bpf", "true or false"}},
      {"[containers]\ndefault_mode = 3\n", {"containers.default_mode", "a string"}},
      {"[containers]\ndefault_policy = {}\n", {"containers.default_policy", "a string"}},
      {"[policies]\ndir = 1979-05-27\n", {"policies.dir", "a string"}},
      {"[policies]\ntrust = \"/etc/a.pem\"\n", {"policies.trust", "array of strings"}},
      {"[policies]\ntrust = [\"/a.pem\", 2]\n", {"policies.trust", "array of strings"}},
      {"[policies]\ntrust = [[\"/a.pem\"]]\n", {"policies.trust", "array of strings"}},
      {"[policies]\nallow_unsigned = \"false\"\n", {"policies.allow_unsigned", "true or false"}},
      {"[vtpm]\npool = \"2\"\n", {"vtpm.pool", "an integer"}},
      {"[vtpm]\nmax = 2.5\n", {"vtpm.max", "an integer"}},
      {"[vtpm]\narchive_on_destroy = 0\n", {"vtpm.archive_on_destroy", "true or false"}},
      {"[enforcement]\nhash_threads = true\n", {"enforcement.hash_threads", "an integer"}},
      {"[enforcement]\ncache_entries = \"many\"\n", {"enforcement.cache_entries", "an integer"}},
  });
}

TEST(AgentConfig, RefusesOutOfRangeNumbersNamingTheKey) {
  expect_errors({
      {"[host_tpm]\npcr = 24\n", {"host_tpm.pcr", "0 to 23"}},
      {"[host_tpm]\npcr = -1\n", {"host_tpm.pcr", "0 to 23"}},
      {"[host_tpm]\npcr = 10\n", {"host_tpm.pcr", "10", "IMA"}},
      {"[vtpm]\npool = 65\n", {"vtpm.pool", "0 to 64"}},
      {"[vtpm]\nmax = 0\n", {"vtpm.max", "1 to 4096"}},
      {"[vtpm]\nmax = 4097\n", {"vtpm.max", "1 to 4096"}},
      {"[enforcement]\nhash_threads = 0\n", {"enforcement.hash_threads", "1 to 256"}},
      {"[enforcement]\nhash_threads = 257\n", {"enforcement.hash_threads", "1 to 256"}},
      {"[enforcement]\ncache_entries = 0\n", {"enforcement.cache_entries"}},
      {"[enforcement]\ncache_entries = 1048577\n", {"enforcement.cache_entries"}},
      {"[enforcement]\nimage_cache_entries = -1\n", {"enforcement.image_cache_entries"}},
      {"[enforcement]\nimage_cache_entries = 1048577\n", {"enforcement.image_cache_entries"}},
      {"[enforcement]\ncache_entries = -9223372036854775808\n", {"enforcement.cache_entries"}},
      {"[enforcement]\nhash_threads = 9223372036854775807\n", {"enforcement.hash_threads"}},
      {"[enforcement]\nhash_threads = 4294967298\n", {"enforcement.hash_threads"}},
  });
}

TEST(AgentConfig, RefusesRelativeAndEmptyPathsNamingTheKey) {
  expect_errors({
      {"state_dir = \"var/lib/ctrust\"\n", {"state_dir", "absolute"}},
      {"state_dir = \"\"\n", {"state_dir", "absolute"}},
      {"socket = \"ctrustd.sock\"\n", {"socket", "absolute"}},
      {"socket = \"\"\n", {"socket", "absolute"}},
      {"[policies]\ndir = \"policies\"\n", {"policies.dir", "absolute"}},
  });
  // Only the offending key is named.
  auto socket = parse_config("socket = \"x.sock\"\n", kOrigin);
  ASSERT_FALSE(socket);
  EXPECT_EQ(socket.error().message().find("state_dir"), std::string::npos)
      << socket.error().message();
}

TEST(AgentConfig, RefusesBadModesAndLevels) {
  expect_errors({
      {"[containers]\ndefault_mode = \"enforcing\"\n",
       {"containers.default_mode", "off, measure, audit or enforce"}},
      {"[containers]\ndefault_mode = \"Enforce\"\n", {"containers.default_mode"}},
      {"[containers]\ndefault_mode = \"\"\n", {"containers.default_mode"}},
      {"log_level = \"verbose\"\n", {"log_level", "trace, debug, info, warn, error or off"}},
      {"log_level = \"\"\n", {"log_level"}},
  });
}

TEST(AgentConfig, RefusesASectionThatIsNotATable) {
  expect_errors({
      {"host_tpm = \"device:/dev/tpmrm0\"\n", {"host_tpm must be a table"}},
      {"containers = 1\n", {"containers must be a table"}},
      {"policies = [\"/etc/a.pem\"]\n", {"policies must be a table"}},
      {"[[vtpm]]\npool = 1\n", {"vtpm must be a table"}},
      {"enforcement = true\n", {"enforcement must be a table"}},
  });
}

TEST(AgentConfig, RefusesSyntaxErrorsWithTheirPosition) {
  expect_errors({
      {"state_dir = \n", {"ctrustd.toml:1:"}},
      {"state_dir = \"/x\"\nstate_dir = \"/y\"\n", {":2:"}},  // a duplicate key
      {"[vtpm]\npool = 1\n[vtpm]\nmax = 2\n", {":3:"}},       // a table defined twice
      {"[vtpm\npool = 1\n", {":1:"}},
      {"socket = \"/unterminated\n", {":1:"}},
      {"log_level = \"\xff\xfe\"\n", {":1:"}},  // not UTF-8
  });
  // An embedded NUL, which a C string would hide.
  auto nul = parse_config(std::string_view("socket = \"/a\"\n\0", 15), kOrigin);
  ASSERT_FALSE(nul);
}

TEST(AgentConfig, LoadsAFileOrTheDefaults) {
  testing::TempDir temp;
  std::string path = temp.file("ctrustd.toml");
  auto missing = load_config(path, false);
  ASSERT_TRUE(missing) << missing.error().message();
  EXPECT_EQ(missing->state_dir, "/var/lib/ctrust");
  EXPECT_FALSE(load_config(path, true));

  {
    std::ofstream out(path);
    out << "[vtpm]\npool = 5\n";
  }
  auto loaded = load_config(path, true);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->vtpm_pool, 5U);

  {
    std::ofstream out(path);
    out << "[vtpm]\npol = 5\n";
  }
  auto bad = load_config(path, false);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find(path + ": unknown key vtpm.pol"), std::string::npos)
      << bad.error().message();
}

}  // namespace
}  // namespace ctrust::agent
