// Remote attestation from the command line (docs/cli/attest.md): `ctrust attest`, a one-shot
// registration and challenge of one agent with the verdict, its reasons and an exit code;
// and `ctrust verifier ...`, the admin commands of a running ctrust-verifier (its REST API).
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iostream>
#include <memory>
#include <regex>
#include <string>

#include "attest/ear.h"
#include "cmd/ctrust/cli.h"
#include "crypto/digest.h"
#include "net/http_client.h"
#include "policy/policy.h"
#include "util/file.h"
#include "util/text.h"
#include "verifier/attester.h"
#include "verifier/registration.h"
#include "verifier/service.h"

namespace ctrust::cli {
namespace {

using nlohmann::json;

constexpr const char* kVerifierState = "/var/lib/ctrust-verifier";

// attest: 0 affirming, 4 warning, 1 contraindicated or none (not trusted), 3 could not run.
constexpr int kExitWarning = 4;

int exit_for(attest::Status s) {
  switch (s) {
    case attest::Status::kAffirming:
      return kExitOk;
    case attest::Status::kWarning:
      return kExitWarning;
    default:
      return kExitRejected;
  }
}

struct TlsArgs {
  std::string cert;
  std::string key;
  std::string state_dir = kVerifierState;
  std::string key_path() const { return key.empty() ? state_dir + "/tls/client.key" : key; }
  std::string cert_path() const { return cert.empty() ? state_dir + "/tls/client.pem" : cert; }
};

void add_tls_options(CLI::App* cmd, TlsArgs& a) {
  cmd->add_option("--cert", a.cert, "Client certificate (PEM; default STATE/tls/client.pem)");
  cmd->add_option("--key", a.key, "Its private key (PEM; default STATE/tls/client.key)");
  cmd->add_option("--verifier-state", a.state_dir,
                  "The verifier's state directory, for the default certificate")
      ->capture_default_str();
}

struct AttestArgs {
  std::string agent;
  std::string container;
  std::vector<std::string> ek_pins;
  std::vector<std::string> ek_ca;
  std::vector<std::string> policies;
  std::vector<std::string> policy_trust;
  bool allow_unsigned = false;
  std::vector<std::string> binaries;
  std::vector<std::string> configs;
  int timeout_ms = 10000;
  bool json = false;
  TlsArgs tls;
};

void print_reasons(const std::vector<attest::Reason>& reasons, const char* indent) {
  for (const auto& r : reasons) {
    std::string where;
    if (r.entry) where = " [entry " + std::to_string(*r.entry) + "]";
    std::printf("%s%s%s: %s\n", indent, r.code.c_str(), where.c_str(),
                printable(r.message, 300).c_str());
  }
}

int run_attest(const AttestArgs& a) {
  auto client = net::load_identity(a.tls.key_path(), a.tls.cert_path());
  if (!client) return report_error(std::move(client).error().with_context("client certificate"));
  verifier::RegistrationOptions options;
  options.client = std::move(*client);
  options.trust.pins = a.ek_pins;
  auto cas = net::load_certificates(a.ek_ca);
  if (!cas) return report_error(cas.error());
  options.trust.cas = std::move(*cas);
  options.timeout_ms = a.timeout_ms;

  // The policies to judge by: each signed by a trusted key, matched to a container by the
  // digest the agent logged (or, with one policy, used for every container).
  policy::TrustAnchors anchors;
  for (const auto& path : a.policy_trust) {
    auto t = policy::load_trust_anchors(path);
    if (!t) return report_error(t.error());
    anchors.keys.insert(anchors.keys.end(), t->keys.begin(), t->keys.end());
    anchors.certificates.insert(anchors.certificates.end(), t->certificates.begin(),
                                t->certificates.end());
  }
  std::vector<attest::PolicyChoice> choices;
  for (const auto& path : a.policies) {
    auto bytes = read_file(path, policy::kMaxPolicyBytes);
    if (!bytes) return report_error(bytes.error());
    std::string text(bytes->begin(), bytes->end());
    auto p = policy::parse_policy(text);
    if (!p) return report_error(std::move(p).error().with_context(path));
    if (p->signature) {
      auto v = policy::verify_policy(*p, anchors, std::time(nullptr));
      if (!v) return report_error(v.error());
      if (!v->ok) return report_error(path + ": " + v->reason);
    } else if (!a.allow_unsigned) {
      return report_error(path + " is not signed (or pass --allow-unsigned)");
    }
    auto c = policy::CompiledPolicy::compile(*p);
    if (!c) return report_error(c.error());
    attest::PolicyChoice choice;
    choice.name = p->name + "@" + std::to_string(p->serial);
    auto d = crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(text));
    choice.digest = "sha256:" + d->hex();
    choice.compiled = std::make_shared<policy::CompiledPolicy>(std::move(*c));
    for (const auto& img : p->images) choice.images.push_back("sha256:" + img.hex());
    choices.push_back(std::move(choice));
  }

  auto reg = verifier::register_agent(a.agent, options);
  if (!reg) {
    if (reg.error().code() == Errc::kInvalidArgument) {
      std::fprintf(stderr, "ctrust: agent not trusted: %s\n", reg.error().message().c_str());
      return kExitRejected;
    }
    return report_error(reg.error());
  }
  auto http = verifier::agent_client(*reg, *options.client, a.timeout_ms);
  if (!http) return report_error(http.error());
  attest::HostState host;
  std::map<std::string, attest::ContainerState> containers;
  attest::ReferenceValues refs;
  refs.agent_binaries = a.binaries;
  refs.agent_configs = a.configs;
  auto lookup = [&](const std::string&, const std::string&,
                    const std::string& logged) -> std::optional<attest::PolicyChoice> {
    for (const auto& c : choices) {
      if (c.digest == logged) return c;
    }
    if (choices.size() == 1) return choices[0];
    return std::nullopt;
  };
  auto outcome =
      verifier::attest_agent(*http, *reg, host, containers, refs, lookup, std::time(nullptr));
  if (!outcome) return report_error(outcome.error());
  attest::Ear ear = verifier::make_ear(*reg, host, containers, &*outcome, std::time(nullptr));

  const attest::Submod* host_sub = ear.find_submod(verifier::kHostSubmod);
  attest::Status verdict = host_sub->status;
  std::vector<const attest::Submod*> shown;
  if (!a.container.empty()) {
    const attest::Submod* s = ear.find_submod(verifier::container_submod(a.container));
    if (s == nullptr) {
      std::fprintf(stderr, "ctrust: agent %s reports no container %s\n", reg->id.c_str(),
                   printable(a.container).c_str());
      return kExitRejected;
    }
    verdict = attest::worse_of(host_sub->status, s->status);
    shown.push_back(s);
  } else {
    // The host and every running container. A container that stopped before this first
    // challenge is known from the host log only (status none): shown, not counted.
    for (const auto& s : ear.submods) {
      if (s.name == verifier::kHostSubmod) continue;
      shown.push_back(&s);
      auto c = containers.find(s.name.substr(10));
      bool gone = c != containers.end() && c->second.stopped && s.status == attest::Status::kNone;
      if (!gone) verdict = attest::worse_of(verdict, s.status);
    }
  }
  if (a.json) {
    json out = {
        {"agent", reg->id}, {"verdict", attest::status_name(verdict)}, {"claims", ear.to_claims()}};
    print_json(out);
    return exit_for(verdict);
  }
  std::printf("agent %s (%s): EK %s (%s)\n", reg->id.c_str(), reg->url.c_str(),
              reg->ek_fingerprint.c_str(), reg->ek_trust.c_str());
  std::printf("host: %s (%llu host log entries)\n",
              std::string(attest::status_name(host_sub->status)).c_str(),
              static_cast<unsigned long long>(host.log.offset));
  print_reasons(host_sub->reasons, "  ");
  for (const auto* s : shown) {
    auto c = containers.find(s->name.substr(10));
    std::printf("%s: %s (%llu entries, policy %s)\n", s->name.c_str(),
                std::string(attest::status_name(s->status)).c_str(),
                static_cast<unsigned long long>(c != containers.end() ? c->second.log.offset : 0),
                s->policy_id.empty() ? "-" : s->policy_id.c_str());
    print_reasons(s->reasons, "  ");
  }
  std::printf("verdict: %s\n", std::string(attest::status_name(verdict)).c_str());
  return exit_for(verdict);
}

// --- ctrust verifier ... ------------------------------------------------------------------

struct AdminArgs {
  std::string url = "https://127.0.0.1:8443";
  TlsArgs tls;
  bool json = false;
  int timeout_ms = 30000;
};

Result<net::HttpClient> admin_client(const AdminArgs& a) {
  CTRUST_ASSIGN_OR_RETURN(net::TlsIdentity id,
                          net::load_identity(a.tls.key_path(), a.tls.cert_path()));
  net::ClientOptions o;
  o.identity = std::move(id);
  auto cas = net::load_certificates({a.tls.state_dir + "/tls/ca.pem"});
  if (!cas) return std::move(cas).error().with_context("the verifier's CA");
  o.ca_certs = std::move(*cas);
  o.timeout_ms = a.timeout_ms;
  return net::HttpClient::create(a.url, std::move(o));
}

// Sends one request; prints the JSON answer (or calls `human`); maps HTTP errors to exit codes.
int call(const AdminArgs& a, const char* method, const std::string& path, const std::string& body,
         const std::function<void(const json&)>& human) {
  auto client = admin_client(a);
  if (!client) return report_error(client.error());
  auto r = client->request(method, path, body);
  if (!r) return report_error(std::move(r).error().with_context("the verifier at " + a.url));
  auto doc = json::parse(r->body, nullptr, false);
  if (r->status >= 400) {
    std::string msg = "HTTP " + std::to_string(r->status);
    if (doc.is_object() && doc.contains("error") && doc["error"].is_object()) {
      msg = doc["error"].value("message", msg);
    }
    report_error(msg);
    return r->status == 404 || r->status == 400 ? kExitRejected : kExitError;
  }
  if (doc.is_discarded()) {
    std::fwrite(r->body.data(), 1, r->body.size(), stdout);
    return kExitOk;
  }
  if (a.json || !human) {
    print_json(doc);
  } else {
    human(doc);
  }
  return kExitOk;
}

void print_agents(const json& doc) {
  std::printf("%-20s %-14s %-16s %-30s %s\n", "AGENT", "STATUS", "VERDICT", "URL", "CONTAINERS");
  for (const auto& ag : doc.value("agents", json::array())) {
    std::printf("%-20s %-14s %-16s %-30s %zu\n", printable(ag.value("id", ""), 20).c_str(),
                ag.value("status", "").c_str(), ag.value("verdict", "").c_str(),
                printable(ag.value("url", ""), 30).c_str(),
                ag.value("containers", json::array()).size());
  }
}

void print_agent(const json& ag) {
  std::printf("agent %s: %s, host verdict %s (%s)\n", ag.value("id", "").c_str(),
              ag.value("status", "").c_str(), ag.value("verdict", "").c_str(),
              ag.value("url", "").c_str());
  auto reasons = [](const json& list) {
    for (const auto& r : list) {
      std::string where = r.contains("entry") ? " [entry " + r["entry"].dump() + "]" : "";
      std::printf("    %s%s: %s\n", r.value("code", "").c_str(), where.c_str(),
                  printable(r.value("message", ""), 300).c_str());
    }
  };
  reasons(ag.value("reasons", json::array()));
  if (ag.contains("last_reasons")) {
    for (const auto& r : ag["last_reasons"]) {
      if (r.value("code", "") == "agent-restart" || r.value("code", "") == "no-reference-value") {
        std::printf("    %s: %s\n", r.value("code", "").c_str(),
                    printable(r.value("message", ""), 300).c_str());
      }
    }
  }
  if (ag.contains("error")) std::printf("  error: %s\n", ag.value("error", "").c_str());
  for (const auto& c : ag.value("containers", json::array())) {
    std::printf("  container %-24s %-16s %5llu entries  policy %s\n",
                printable(c.value("id", ""), 24).c_str(), c.value("verdict", "").c_str(),
                static_cast<unsigned long long>(c.value("log_entries", 0ULL)),
                c.value("policy", "").empty() ? "-" : c.value("policy", "").c_str());
    reasons(c.value("reasons", json::array()));
  }
}

std::string escape_path(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out.push_back(static_cast<char>(ch));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", ch);
      out += buf;
    }
  }
  return out;
}

}  // namespace

void register_attest_commands(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<AttestArgs>();
  auto* cmd = app.add_subcommand(
      "attest",
      "Challenge one agent now (registration checks included) and print the verdict on its host "
      "and containers with reasons. Exit 0 affirming, 4 warning, 1 not trusted, 3 error.");
  cmd->add_option("--agent", a->agent, "The agent's URL, https://HOST:PORT")->required();
  cmd->add_option("--container", a->container, "Only this container's verdict (and the host's)");
  cmd->add_option("--ek-pin", a->ek_pins, "Trust this EK public key (sha256:HEX of its SPKI)");
  cmd->add_option("--ek-ca", a->ek_ca, "PEM file of CAs that EK certificates must chain to");
  cmd->add_option("--policy", a->policies, "Policy file(s) to judge the containers by");
  cmd->add_option("--policy-trust", a->policy_trust, "PEM file of trusted policy signers");
  cmd->add_flag("--allow-unsigned", a->allow_unsigned, "Accept unsigned policy files");
  cmd->add_option("--reference-binary", a->binaries, "Accepted ctrustd digest(s), sha256:HEX");
  cmd->add_option("--reference-config", a->configs,
                  "Accepted digest(s) of ctrustd's configuration file, sha256:HEX");
  cmd->add_option("--timeout-ms", a->timeout_ms, "Per request")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the verdict and the EAR claims as JSON");
  add_tls_options(cmd, a->tls);
  cmd->callback([a, &ctx] { ctx.exit_code = run_attest(*a); });

  auto admin = std::make_shared<AdminArgs>();
  auto* v = app.add_subcommand("verifier", "Administer a running ctrust-verifier (its REST API)");
  v->require_subcommand(1);
  v->add_option("--url", admin->url, "The verifier's REST API")->capture_default_str();
  v->add_flag("--json", admin->json, "Print the answers as JSON");
  add_tls_options(v, admin->tls);

  auto* init = v->add_subcommand(
      "init", "Make the verifier's CA and certificates under STATE/tls (agents trust tls/ca.pem)");
  auto sans = std::make_shared<std::vector<std::string>>();
  init->add_option("--san", *sans,
                   "Another name of the REST API's server certificate: a DNS name or an IP "
                   "address (repeatable; e.g. a Kubernetes Service's names)")
      ->check([](const std::string& n) -> std::string {
        static const std::regex kName(
            R"(^([0-9A-Za-z]([0-9A-Za-z-]{0,61}[0-9A-Za-z])?)"
            R"((\.[0-9A-Za-z]([0-9A-Za-z-]{0,61}[0-9A-Za-z])?)*|[0-9a-fA-F:.]+)$)");
        if (n.size() > 253 || !std::regex_match(n, kName)) {
          return "not a DNS name or IP address: " + n;
        }
        return {};
      });
  init->callback([admin, sans, &ctx] {
    std::string dir = admin->tls.state_dir + "/tls";
    auto present = [&](const char* f) { return ::access((dir + "/" + f).c_str(), F_OK) == 0; };
    if (!sans->empty() && present("ca.pem") && present("server.pem") && present("client.pem")) {
      std::fprintf(stderr,
                   "ctrust: warning: %s exists: its certificates are kept and --san is not "
                   "applied (remove the directory to make new ones, with a new CA)\n",
                   dir.c_str());
    }
    auto r = verifier::ensure_tls_material(dir, *sans);
    if (!r) {
      ctx.exit_code = report_error(r.error());
      return;
    }
    std::printf("%s/tls/ca.pem\n", admin->tls.state_dir.c_str());
  });

  auto reg_url = std::make_shared<std::string>();
  auto reg_pin = std::make_shared<std::string>();
  auto* reg = v->add_subcommand("register", "Register an agent (EK, AK and TLS key checks)");
  reg->add_option("url", *reg_url, "The agent's URL, https://HOST:PORT")->required();
  reg->add_option("--ek-pin", *reg_pin, "Trust this EK (sha256:HEX) for this agent");
  reg->callback([admin, reg_url, reg_pin, &ctx] {
    json body = {{"url", *reg_url}};
    if (!reg_pin->empty()) body["ek_pin"] = *reg_pin;
    ctx.exit_code = call(*admin, "POST", "/v1/agents", body.dump(), [](const json& ag) {
      std::printf("registered %s (EK %s, %s)\n", ag.value("id", "").c_str(),
                  ag.value("ek", "").c_str(), ag.value("ek_trust", "").c_str());
    });
  });

  v->add_subcommand("agents", "List agents with their verdicts")->callback([admin, &ctx] {
    ctx.exit_code = call(*admin, "GET", "/v1/agents", "", print_agents);
  });
  auto agent_id = std::make_shared<std::string>();
  auto* show = v->add_subcommand("show", "An agent's verdicts, per container, with reasons");
  show->add_option("agent", *agent_id, "Agent id")->required();
  show->callback([admin, agent_id, &ctx] {
    ctx.exit_code = call(*admin, "GET", "/v1/agents/" + escape_path(*agent_id), "", print_agent);
  });
  auto* att = v->add_subcommand("attest", "Attest an agent now and show the result");
  att->add_option("agent", *agent_id, "Agent id")->required();
  att->callback([admin, agent_id, &ctx] {
    ctx.exit_code =
        call(*admin, "POST", "/v1/agents/" + escape_path(*agent_id) + "/attest", "", print_agent);
  });
  auto* rm = v->add_subcommand("remove", "Forget an agent (and its history)");
  rm->add_option("agent", *agent_id, "Agent id")->required();
  rm->callback([admin, agent_id, &ctx] {
    ctx.exit_code =
        call(*admin, "DELETE", "/v1/agents/" + escape_path(*agent_id), "",
             [](const json& d) { std::printf("removed %s\n", d.value("deleted", "").c_str()); });
  });
  auto jwt = std::make_shared<bool>(false);
  auto* result = v->add_subcommand("result", "An agent's latest EAR (attestation result)");
  result->add_option("agent", *agent_id, "Agent id")->required();
  result->add_flag("--jwt", *jwt, "Print the signed JWT only");
  result->callback([admin, agent_id, jwt, &ctx] {
    ctx.exit_code =
        call(*admin, "GET",
             "/v1/agents/" + escape_path(*agent_id) + "/result" + (*jwt ? "?format=jwt" : ""), "",
             nullptr);
  });
  auto hist = std::make_shared<std::array<std::string, 3>>();
  auto* history = v->add_subcommand("history", "Changes of verdict, newest first");
  history->add_option("--agent", (*hist)[0], "Only this agent");
  history->add_option("--container", (*hist)[1], "Only this container");
  history->add_option("--limit", (*hist)[2], "At most this many (default 100)");
  history->callback([admin, hist, &ctx] {
    std::string q = "/v1/history?limit=" + ((*hist)[2].empty() ? "100" : escape_path((*hist)[2]));
    if (!(*hist)[0].empty()) q += "&agent=" + escape_path((*hist)[0]);
    if (!(*hist)[1].empty()) q += "&container=" + escape_path((*hist)[1]);
    ctx.exit_code = call(*admin, "GET", q, "", [](const json& d) {
      for (const auto& e : d.value("events", json::array())) {
        std::string what = e.value("container", "").empty() ? "host" : e.value("container", "");
        std::string first;
        if (!e["reasons"].empty()) first = e["reasons"][0].value("message", "");
        std::printf("%-6lld %-12lld %-16s %-24s %-16s %s\n",
                    static_cast<long long>(e.value("id", 0LL)),
                    static_cast<long long>(e.value("time", 0LL)), e.value("agent", "").c_str(),
                    printable(what, 24).c_str(), e.value("verdict", "").c_str(),
                    printable(first, 120).c_str());
      }
    });
  });

  auto* pol = v->add_subcommand("policy", "Policies the verifier judges containers by");
  pol->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto* add = pol->add_subcommand("add", "Add a signed policy (its signature is checked)");
  add->add_option("file", *file, "Policy file")->required()->check(CLI::ExistingFile);
  add->callback([admin, file, &ctx] {
    auto bytes = read_file(*file, policy::kMaxPolicyBytes);
    if (!bytes) {
      ctx.exit_code = report_error(bytes.error());
      return;
    }
    ctx.exit_code =
        call(*admin, "POST", "/v1/policies", std::string(bytes->begin(), bytes->end()),
             [](const json& p) {
               std::printf("policy %s serial %llu (%s), signer %s\n", p.value("name", "").c_str(),
                           static_cast<unsigned long long>(p.value("serial", 0ULL)),
                           p.value("digest", "").c_str(), p.value("signer", "").c_str());
             });
  });
  pol->add_subcommand("list", "List policies")->callback([admin, &ctx] {
    ctx.exit_code = call(*admin, "GET", "/v1/policies", "", [](const json& d) {
      for (const auto& p : d.value("policies", json::array())) {
        std::printf("%-24s %6llu %s %s\n", p.value("name", "").c_str(),
                    static_cast<unsigned long long>(p.value("serial", 0ULL)),
                    p.value("digest", "").c_str(), p.value("signer", "").c_str());
      }
    });
  });
  auto pname = std::make_shared<std::string>();
  auto* prm = pol->add_subcommand("remove", "Remove a policy (all serials) and its mappings");
  prm->add_option("name", *pname, "Policy name")->required();
  prm->callback([admin, pname, &ctx] {
    ctx.exit_code = call(*admin, "DELETE", "/v1/policies/" + escape_path(*pname), "", nullptr);
  });

  auto map = std::make_shared<std::array<std::string, 3>>();
  auto* mp = v->add_subcommand("map", "Judge an image's or a container's logs by a policy");
  mp->add_option("kind", (*map)[0], "image or container")
      ->required()
      ->check(CLI::IsMember({"image", "container"}));
  mp->add_option("key", (*map)[1], "sha256:HEX image digest, or a container id (AGENT/ID or ID)")
      ->required();
  mp->add_option("policy", (*map)[2], "Policy name")->required();
  mp->callback([admin, map, &ctx] {
    json body = {{"kind", (*map)[0]}, {"key", (*map)[1]}, {"policy", (*map)[2]}};
    ctx.exit_code = call(*admin, "PUT", "/v1/mappings", body.dump(), nullptr);
  });
  auto* um = v->add_subcommand("unmap", "Remove a mapping");
  um->add_option("kind", (*map)[0], "image or container")->required();
  um->add_option("key", (*map)[1], "Its key")->required();
  um->callback([admin, map, &ctx] {
    ctx.exit_code =
        call(*admin, "DELETE",
             "/v1/mappings?kind=" + escape_path((*map)[0]) + "&key=" + escape_path((*map)[1]), "",
             nullptr);
  });
  v->add_subcommand("mappings", "List mappings")->callback([admin, &ctx] {
    ctx.exit_code = call(*admin, "GET", "/v1/mappings", "", nullptr);
  });
  v->add_subcommand("metrics", "Print the verifier's Prometheus metrics")->callback([admin, &ctx] {
    ctx.exit_code = call(*admin, "GET", "/metrics", "", nullptr);
  });
}

}  // namespace ctrust::cli
