// ctrust-verifier (docs/VERIFIER.md): registers agents, keeps signed policies and their
// mappings to images and containers, challenges every agent on a schedule, verifies the
// evidence incrementally, keeps the verdicts and their history in the store, publishes
// results as EAR JWTs and over REST, pushes every change of verdict to webhooks, and
// exports Prometheus metrics.
//
// Scale: the attestation loop claims due agents from the store under a lease (so several
// verifiers sharing one PostgreSQL split the agents), and runs up to `concurrency`
// attestations at once on its worker threads; per-agent and per-container replay state is
// saved after every attestation in one transaction, so a restart resumes where it stopped
// without refetching whole logs.
//
// On disk, under state_dir (0700): tls/ (the verifier's CA, its REST server certificate,
// its client certificate for agents and admins; agents trust tls/ca.pem), ear-key.pem (the
// EAR signing key), verifier.db (the default SQLite store).
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <memory>

#include "util/result.h"
#include "verifier/config.h"

namespace ctrust::verifier {

class Verifier {
 public:
  static Result<std::unique_ptr<Verifier>> start(const VerifierConfig& config);
  virtual ~Verifier() = default;
  // The REST API's bound port (config.listen may ask for port 0).
  virtual int port() const = 0;
  // Blocks until stop().
  virtual void wait() = 0;
  virtual void stop() = 0;
};

// Creates STATE/tls on first use: a CA, a server certificate for the REST API (SANs
// localhost, 127.0.0.1, ::1, the host name and `names`: DNS names or IP addresses) and a
// client certificate. Returns nothing new when they exist. Also used by `ctrust verifier
// init --san NAME`, e.g. for a Kubernetes Service's names.
Result<void> ensure_tls_material(const std::string& tls_dir,
                                 const std::vector<std::string>& names = {});

}  // namespace ctrust::verifier
