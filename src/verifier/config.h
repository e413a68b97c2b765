// ctrust-verifier's configuration: a TOML file (default /etc/ctrust/verifier.toml), every
// key optional with the documented default (docs/VERIFIER.md, deploy/verifier.toml).
// Unknown keys and wrong types are errors naming the key.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/result.h"

namespace ctrust::verifier {

inline constexpr const char* kDefaultConfigPath = "/etc/ctrust/verifier.toml";

struct VerifierConfig {
  std::string state_dir = "/var/lib/ctrust-verifier";
  std::string listen = "127.0.0.1:8443";  // the REST API (HTTPS, client certificates)
  std::string store;                      // default sqlite:STATE/verifier.db
  std::string id;                         // this instance's name (leases); default HOSTNAME-PID
  std::string log_level = "info";
  // The EAR signing key (PEM). "": STATE/ear-key.pem, made on first start. Set: it must
  // exist (a Secret shared by several verifiers), and is never made.
  std::string ear_key;

  // [attestation]
  unsigned interval = 10;       // seconds between two attestations of one agent
  unsigned concurrency = 32;    // attestations in flight
  unsigned timeout_ms = 10000;  // per request to an agent
  unsigned lease = 60;          // seconds an agent stays with this instance once claimed
  bool start_paused = false;    // no automatic attestation (tests, one-shot use)

  // [trust]
  std::vector<std::string> ek_ca;         // PEM files: CAs that EK certificates must chain to
  std::vector<std::string> ek_pins;       // "sha256:HEX" of EK public keys trusted without one
  std::vector<std::string> policy_trust;  // PEM files: policy signer keys or CAs
  bool allow_unsigned_policies = false;

  // [reference]: values the agents' host records must match (empty: any, with a warning).
  std::vector<std::string> agent_binaries;
  std::vector<std::string> agent_configs;
  std::vector<std::string> bpf_objects;

  // [webhooks]
  std::vector<std::string> webhooks;  // URLs POSTed a JSON event on every change of verdict
  unsigned webhook_timeout_ms = 5000;

  // [api]
  double api_rate = 200;                // requests per second per client address
  std::size_t api_max_body = 8u << 20;  // bytes (a policy may be large)

  std::string store_url() const {
    return store.empty() ? "sqlite:" + state_dir + "/verifier.db" : store;
  }
  std::string tls_dir() const { return state_dir + "/tls"; }
  std::string ear_key_path() const {
    return ear_key.empty() ? state_dir + "/ear-key.pem" : ear_key;
  }
};

Result<VerifierConfig> parse_config(std::string_view text, const std::string& origin);
// A missing file at the default path gives the defaults.
Result<VerifierConfig> load_config(const std::string& path, bool must_exist);

}  // namespace ctrust::verifier
