#include "verifier/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "support/temp_dir.h"

namespace ctrust::verifier {
namespace {

constexpr const char* kOrigin = "verifier.toml";

const std::string kDigest = "sha256:" + std::string(64, 'a');

// Every field of two configurations, one expectation each (so a failure names the field).
void expect_same(const VerifierConfig& c, const VerifierConfig& d) {
  EXPECT_EQ(c.state_dir, d.state_dir);
  EXPECT_EQ(c.listen, d.listen);
  EXPECT_EQ(c.store, d.store);
  EXPECT_EQ(c.id, d.id);
  EXPECT_EQ(c.log_level, d.log_level);
  EXPECT_EQ(c.ear_key, d.ear_key);
  EXPECT_EQ(c.interval, d.interval);
  EXPECT_EQ(c.concurrency, d.concurrency);
  EXPECT_EQ(c.timeout_ms, d.timeout_ms);
  EXPECT_EQ(c.lease, d.lease);
  EXPECT_EQ(c.start_paused, d.start_paused);
  EXPECT_EQ(c.ek_ca, d.ek_ca);
  EXPECT_EQ(c.ek_pins, d.ek_pins);
  EXPECT_EQ(c.policy_trust, d.policy_trust);
  EXPECT_EQ(c.allow_unsigned_policies, d.allow_unsigned_policies);
  EXPECT_EQ(c.agent_binaries, d.agent_binaries);
  EXPECT_EQ(c.agent_configs, d.agent_configs);
  EXPECT_EQ(c.bpf_objects, d.bpf_objects);
  EXPECT_EQ(c.webhooks, d.webhooks);
  EXPECT_EQ(c.webhook_timeout_ms, d.webhook_timeout_ms);
  EXPECT_EQ(c.api_rate, d.api_rate);
  EXPECT_EQ(c.api_max_body, d.api_max_body);
  EXPECT_EQ(c.store_url(), d.store_url());
  EXPECT_EQ(c.tls_dir(), d.tls_dir());
}

TEST(VerifierConfig, TheDefaultsAreTheDocumentedOnes) {
  VerifierConfig d;
  EXPECT_EQ(d.state_dir, "/var/lib/ctrust-verifier");
  EXPECT_EQ(d.listen, "127.0.0.1:8443");
  EXPECT_EQ(d.store, "");
  EXPECT_EQ(d.id, "");
  EXPECT_EQ(d.log_level, "info");
  EXPECT_EQ(d.interval, 10U);
  EXPECT_EQ(d.concurrency, 32U);
  EXPECT_EQ(d.timeout_ms, 10000U);
  EXPECT_EQ(d.lease, 60U);
  EXPECT_FALSE(d.start_paused);
  EXPECT_TRUE(d.ek_ca.empty());
  EXPECT_TRUE(d.ek_pins.empty());
  EXPECT_TRUE(d.policy_trust.empty());
  EXPECT_FALSE(d.allow_unsigned_policies);
  EXPECT_TRUE(d.agent_binaries.empty());
  EXPECT_TRUE(d.agent_configs.empty());
  EXPECT_TRUE(d.bpf_objects.empty());
  EXPECT_TRUE(d.webhooks.empty());
  EXPECT_EQ(d.webhook_timeout_ms, 5000U);
  EXPECT_EQ(d.api_rate, 200.0);
  EXPECT_EQ(d.api_max_body, std::size_t{8} << 20);
  EXPECT_EQ(d.store_url(), "sqlite:/var/lib/ctrust-verifier/verifier.db");
  EXPECT_EQ(d.tls_dir(), "/var/lib/ctrust-verifier/tls");
}

TEST(VerifierConfig, EmptyTextGivesTheDefaults) {
  for (const char* text : {"", "\n", "# only a comment\n", "  \n\t\n", "[attestation]\n[api]\n"}) {
    auto c = parse_config(text, kOrigin);
    ASSERT_TRUE(c) << c.error().message();
    expect_same(*c, VerifierConfig{});
  }
}

// deploy/verifier.toml documents the defaults: it must parse to exactly them.
TEST(VerifierConfig, TheShippedConfigFileIsTheDefaults) {
  auto c = load_config(std::string(CTRUST_TEST_DATA_DIR) + "/../../deploy/verifier.toml", true);
  ASSERT_TRUE(c) << c.error().message();
  expect_same(*c, VerifierConfig{});
}

TEST(VerifierConfig, ParsesEveryDocumentedKey) {
  std::string other = "sha256:" + std::string(32, '0') + std::string(32, 'f');
  auto c = parse_config(R"(
state_dir = "/srv/verifier"
listen = "0.0.0.0:9443"
store = "postgresql://ctrust@db/ctrust"
id = "verifier-a"
log_level = "debug"
ear_key = "/etc/ctrust/ear/ear-key.pem"

[attestation]
interval = 30
concurrency = 128
timeout_ms = 2500
lease = 300
start_paused = true

[trust]
ek_ca = ["/etc/ctrust/ek-ca.pem"]
ek_pins = [")" + kDigest + R"("]
policy_trust = ["/etc/ctrust/signer.pub", "/etc/ctrust/signers-ca.pem"]
allow_unsigned_policies = true

[reference]
agent_binaries = [")" + kDigest +
                            R"(", ")" + other + R"("]
agent_configs = [")" + other +
                            R"("]
bpf_objects = [")" + kDigest +
                            R"("]

[webhooks]
urls = ["http://127.0.0.1:9000/events", "https://hooks.example.org/ctrust"]
timeout_ms = 750

[api]
rate = 1000
max_body = 1048576
)",
                        kOrigin);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->state_dir, "/srv/verifier");
  EXPECT_EQ(c->listen, "0.0.0.0:9443");
  EXPECT_EQ(c->store, "postgresql://ctrust@db/ctrust");
  EXPECT_EQ(c->store_url(), "postgresql://ctrust@db/ctrust");
  EXPECT_EQ(c->id, "verifier-a");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->ear_key, "/etc/ctrust/ear/ear-key.pem");
  EXPECT_EQ(c->ear_key_path(), "/etc/ctrust/ear/ear-key.pem");
  EXPECT_EQ(c->interval, 30U);
  EXPECT_EQ(c->concurrency, 128U);
  EXPECT_EQ(c->timeout_ms, 2500U);
  EXPECT_EQ(c->lease, 300U);
  EXPECT_TRUE(c->start_paused);
  EXPECT_EQ(c->ek_ca, (std::vector<std::string>{"/etc/ctrust/ek-ca.pem"}));
  EXPECT_EQ(c->ek_pins, (std::vector<std::string>{kDigest}));
  EXPECT_EQ(c->policy_trust,
            (std::vector<std::string>{"/etc/ctrust/signer.pub", "/etc/ctrust/signers-ca.pem"}));
  EXPECT_TRUE(c->allow_unsigned_policies);
  EXPECT_EQ(c->agent_binaries, (std::vector<std::string>{kDigest, other}));
  EXPECT_EQ(c->agent_configs, (std::vector<std::string>{other}));
  EXPECT_EQ(c->bpf_objects, (std::vector<std::string>{kDigest}));
  EXPECT_EQ(c->webhooks, (std::vector<std::string>{"http://127.0.0.1:9000/events",
                                                   "https://hooks.example.org/ctrust"}));
  EXPECT_EQ(c->webhook_timeout_ms, 750U);
  EXPECT_EQ(c->api_rate, 1000.0);
  EXPECT_EQ(c->api_max_body, std::size_t{1} << 20);
  EXPECT_EQ(c->tls_dir(), "/srv/verifier/tls");
}

TEST(VerifierConfig, AcceptsEveryLevelDottedKeysAndInclusiveBounds) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    auto c = parse_config(std::string("log_level = '") + level + "'\n", kOrigin);
    ASSERT_TRUE(c) << level << ": " << c.error().message();
    EXPECT_EQ(c->log_level, level);
  }
  auto low = parse_config(
      "attestation = { interval = 1, concurrency = 1, timeout_ms = 100, lease = 5 }\n"
      "webhooks.timeout_ms = 100\napi.rate = 1\napi.max_body = 1024\n",
      kOrigin);
  ASSERT_TRUE(low) << low.error().message();
  EXPECT_EQ(low->interval, 1U);
  EXPECT_EQ(low->concurrency, 1U);
  EXPECT_EQ(low->timeout_ms, 100U);
  EXPECT_EQ(low->lease, 5U);
  EXPECT_EQ(low->webhook_timeout_ms, 100U);
  EXPECT_EQ(low->api_rate, 1.0);
  EXPECT_EQ(low->api_max_body, 1024U);
  auto high = parse_config(
      "[attestation]\ninterval = 86400\nconcurrency = 4096\ntimeout_ms = 600000\n"
      "lease = 86400\n[webhooks]\ntimeout_ms = 600000\n[api]\nrate = 1000000\n"
      "max_body = 1073741824\n",
      kOrigin);
  ASSERT_TRUE(high) << high.error().message();
  EXPECT_EQ(high->interval, 86400U);
  EXPECT_EQ(high->concurrency, 4096U);
  EXPECT_EQ(high->timeout_ms, 600000U);
  EXPECT_EQ(high->lease, 86400U);
  EXPECT_EQ(high->webhook_timeout_ms, 600000U);
  EXPECT_EQ(high->api_rate, 1000000.0);
  EXPECT_EQ(high->api_max_body, std::size_t{1} << 30);
}

struct Bad {
  std::string text;
  std::vector<std::string> says;  // substrings of the error message
};

void expect_errors(const std::vector<Bad>& cases) {
  for (const auto& c : cases) {
    auto config = parse_config(c.text, kOrigin);
    ASSERT_FALSE(config) << c.text;
    EXPECT_EQ(config.error().code(), Errc::kFormat) << c.text;
    const std::string& message = config.error().message();
    EXPECT_EQ(message.rfind(kOrigin, 0), 0U) << c.text << " -> " << message;
    for (const auto& s : c.says) {
      EXPECT_NE(message.find(s), std::string::npos) << c.text << " -> " << message;
    }
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

TEST(VerifierConfig, RefusesUnknownKeysNamingThem) {
  expect_errors({
      {"statedir = \"/x\"\n", {"unknown key statedir"}},
      {"interval = 10\n", {"unknown key interval"}},  // belongs in [attestation]
      {"[attestation]\nintervall = 10\n", {"unknown key attestation.intervall"}},
      {"[attestation]\npaused = true\n", {"unknown key attestation.paused"}},
      {"[trust]\nek_pin = []\n", {"unknown key trust.ek_pin"}},
      {"[trust]\nallow_unsigned = true\n", {"unknown key trust.allow_unsigned"}},
      {"[reference]\nboot_pcrs = []\n", {"unknown key reference.boot_pcrs"}},
      {"[webhooks]\nurl = \"http://x\"\n", {"unknown key webhooks.url"}},
      {"[api]\nlisten = \"127.0.0.1:1\"\n", {"unknown key api.listen"}},
      {"[api.tls]\ncert = \"x\"\n", {"unknown key api.tls"}},
      {"[storage]\nurl = \"sqlite:x\"\n", {"unknown key storage"}},
  });
}

TEST(VerifierConfig, RefusesWrongTypesNamingTheKey) {
  expect_errors({
      {"state_dir = 1\n", {"state_dir", "a string"}},
      {"listen = 8443\n", {"listen", "a string"}},
      {"store = true\n", {"store", "a string"}},
      {"id = [\"a\"]\n", {"id", "a string"}},
      {"log_level = 3\n", {"log_level", "a string"}},
      {"[attestation]\ninterval = \"10\"\n", {"attestation.interval", "an integer"}},
      {"[attestation]\nconcurrency = 2.5\n", {"attestation.concurrency", "an integer"}},
      {"[attestation]\ntimeout_ms = true\n", {"attestation.timeout_ms", "an integer"}},
      {"[attestation]\nlease = 60.0\n", {"attestation.lease", "an integer"}},
      {"[attestation]\nstart_paused = \"no\"\n", {"attestation.start_paused", "true or false"}},
      {"[trust]\nek_ca = \"/a.pem\"\n", {"trust.ek_ca", "array of strings"}},
      {"[trust]\nek_pins = [1]\n", {"trust.ek_pins", "array of strings"}},
      {"[trust]\npolicy_trust = [[\"/a.pem\"]]\n", {"trust.policy_trust", "array of strings"}},
      {"[trust]\nallow_unsigned_policies = 0\n",
       {"trust.allow_unsigned_policies", "true or false"}},
      {"[reference]\nagent_binaries = \"" + kDigest + "\"\n",
       {"reference.agent_binaries", "array of strings"}},
      {"[reference]\nagent_configs = {}\n", {"reference.agent_configs", "array of strings"}},
      {"[reference]\nbpf_objects = [\"" + kDigest + "\", 2]\n",
       {"reference.bpf_objects", "array of strings"}},
      {"[webhooks]\nurls = \"http://x\"\n", {"webhooks.urls", "array of strings"}},
      {"[webhooks]\ntimeout_ms = \"5s\"\n", {"webhooks.timeout_ms", "an integer"}},
      {"[api]\nrate = 2.5\n", {"api.rate", "an integer"}},
      {"[api]\nmax_body = \"8M\"\n", {"api.max_body", "an integer"}},
  });
}

TEST(VerifierConfig, RefusesOutOfRangeNumbersNamingTheKey) {
  expect_errors({
      {"[attestation]\ninterval = 0\n", {"attestation.interval", "1 to 86400"}},
      {"[attestation]\ninterval = 86401\n", {"attestation.interval", "1 to 86400"}},
      {"[attestation]\ninterval = -1\n", {"attestation.interval"}},
      {"[attestation]\nconcurrency = 0\n", {"attestation.concurrency", "1 to 4096"}},
      {"[attestation]\nconcurrency = 4097\n", {"attestation.concurrency", "1 to 4096"}},
      {"[attestation]\ntimeout_ms = 99\n", {"attestation.timeout_ms", "100 to 600000"}},
      {"[attestation]\nlease = 4\n", {"attestation.lease", "5 to 86400"}},
      {"[attestation]\nlease = 9223372036854775807\n", {"attestation.lease"}},
      {"[webhooks]\ntimeout_ms = 600001\n", {"webhooks.timeout_ms", "100 to 600000"}},
      {"[api]\nrate = 0\n", {"api.rate", "1 to 1000000"}},
      {"[api]\nmax_body = 1023\n", {"api.max_body", "1024 to 1073741824"}},
      {"[api]\nmax_body = 1073741825\n", {"api.max_body", "1024 to 1073741824"}},
  });
}

TEST(VerifierConfig, RefusesARelativeOrEmptyStateDir) {
  expect_errors({
      {"state_dir = \"var/lib/ctrust-verifier\"\n", {"state_dir", "absolute"}},
      {"state_dir = \"./state\"\n", {"state_dir", "absolute"}},
      {"state_dir = \"\"\n", {"state_dir", "absolute"}},
      {"ear_key = \"ear-key.pem\"\n", {"ear_key", "absolute"}},
  });
}

// Digests are "sha256:" and 64 lowercase hex digits, in every list that holds them.
TEST(VerifierConfig, RefusesBadDigests) {
  const std::vector<std::string> bad = {
      "sha256:" + std::string(64, 'A'),        // upper case
      "sha256:" + std::string(63, 'a'),        // too short
      "sha256:" + std::string(65, 'a'),        // too long
      "sha256:" + std::string(63, 'a') + "g",  // not hex
      "sha512:" + std::string(64, 'a'),        // another algorithm
      "SHA256:" + std::string(64, 'a'),
      std::string(64, 'a'),  // no prefix
      "sha256:",
      "",
  };
  const std::vector<std::pair<std::string, std::string>> keys = {{"trust", "ek_pins"},
                                                                 {"reference", "agent_binaries"},
                                                                 {"reference", "agent_configs"},
                                                                 {"reference", "bpf_objects"}};
  std::vector<Bad> cases;
  for (const auto& [section, key] : keys) {
    for (const auto& digest : bad) {
      // A good digest first: the bad one is found wherever it is in the list.
      cases.push_back(
          {"[" + section + "]\n" + key + " = [\"" + kDigest + "\", \"" + digest + "\"]\n",
           {digest, "sha256: followed by 64 lowercase hex digits"}});
    }
  }
  expect_errors(cases);
}

TEST(VerifierConfig, RefusesWebhooksThatAreNotHttpUrls) {
  for (const char* url : {"ftp://hooks.example.org/x", "hooks.example.org:8080/x", "HTTP://x/y",
                          "https:/x", "http:x", "", "file:///tmp/hook", "//x/y"}) {
    expect_errors({{std::string("[webhooks]\nurls = [\"http://ok/\", \"") + url + "\"]\n",
                    {"webhook", std::string(url) + " is not an http(s) URL"}}});
  }
}

// The errors for a bad digest and a bad webhook URL name the value, not the key
// (src/verifier/config.cpp, the checks after the sections are read): they should also name
// reference.agent_binaries, webhooks.urls, ... Enable this when they do.
TEST(VerifierConfig, BadDigestsAndUrlsNameTheirKey) {
  expect_errors({
      {"[trust]\nek_pins = [\"sha256:00\"]\n", {"trust.ek_pins"}},
      {"[reference]\nagent_binaries = [\"sha256:00\"]\n", {"reference.agent_binaries"}},
      {"[reference]\nagent_configs = [\"sha256:00\"]\n", {"reference.agent_configs"}},
      {"[reference]\nbpf_objects = [\"sha256:00\"]\n", {"reference.bpf_objects"}},
      {"[webhooks]\nurls = [\"ftp://x\"]\n", {"webhooks.urls"}},
  });
}

TEST(VerifierConfig, RefusesBadLevels) {
  expect_errors({
      {"log_level = \"verbose\"\n", {"log_level", "trace, debug, info, warn, error or off"}},
      {"log_level = \"INFO\"\n", {"log_level"}},
      {"log_level = \"\"\n", {"log_level"}},
  });
}

TEST(VerifierConfig, RefusesASectionThatIsNotATable) {
  expect_errors({
      {"attestation = 10\n", {"attestation must be a table"}},
      {"trust = [\"/a.pem\"]\n", {"trust must be a table"}},
      {"reference = \"x\"\n", {"reference must be a table"}},
      {"webhooks = [\"http://x/\"]\n", {"webhooks must be a table"}},
      {"[[api]]\nrate = 1\n", {"api must be a table"}},
  });
}

TEST(VerifierConfig, RefusesSyntaxErrorsWithTheirPosition) {
  expect_errors({
      {"state_dir = \n", {"verifier.toml:1:"}},
      {"listen = \"a:1\"\nlisten = \"b:2\"\n", {":2:"}},  // a duplicate key
      {"[api]\nrate = 1\n[api]\nmax_body = 2048\n", {":3:"}},
      {"[attestation\ninterval = 1\n", {":1:"}},
      {"store = \"sqlite:/unterminated\n", {":1:"}},
  });
}

TEST(VerifierConfig, LoadsAFileOrTheDefaults) {
  testing::TempDir temp;
  std::string path = temp.file("verifier.toml");
  auto missing = load_config(path, false);
  ASSERT_TRUE(missing) << missing.error().message();
  expect_same(*missing, VerifierConfig{});
  EXPECT_FALSE(load_config(path, true));

  {
    std::ofstream out(path);
    out << "[attestation]\ninterval = 5\n";
  }
  auto loaded = load_config(path, true);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->interval, 5U);

  {
    std::ofstream out(path);
    out << "[attestation]\nintervl = 5\n";
  }
  auto bad = load_config(path, false);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find(path + ": unknown key attestation.intervl"),
            std::string::npos)
      << bad.error().message();
}

}  // namespace
}  // namespace ctrust::verifier
