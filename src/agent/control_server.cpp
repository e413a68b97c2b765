#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <poll.h>
#include <sys/socket.h>
#include "agent/agent_impl.h"

#include <thread>

#include "agent/control.h"
#include "util/json.h"
#include "util/text.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

json AgentImpl::ps() {
  json list = json::array();
  for (const auto& c : containers_.all()) list.push_back(container_json(*c));
  auto stats = cache_->stats();
  return {{"ok", true},
          {"containers", list},
          {"unmanaged", unmanaged()},
          {"backend", backend_},
          {"unvouched_execs", exec_->unvouched()},
          {"unattributed_events", exec_->unattributed()},
          {"host_log", config_.host_dir() + "/measurements.bin"},
          {"host_pcr", config_.host_pcr},
          {"discovery",
           {{"cgroups", config_.discover},
            {"unknown", config_.discover_unknown},
            {"registered", discovered_.load()},
            {"refused", discover_refused_.load()},
            {"admitted", discover_admitted_.load()}}},
          {"cache",
           {{"hits", stats.hits},
            {"misses", stats.misses},
            {"entries", stats.entries},
            {"image_entries", stats.image_entries},
            {"broken", stats.broken},
            {"writers", stats.writers},
            {"kernel", stats.kernel},
            {"evicted", stats.evicted}}}};
}

json AgentImpl::handle(const json& request, bool defer_start) {
  auto answer = [&]() -> Result<json> {
    if (!request.is_object() || !request.contains("op") || !request["op"].is_string()) {
      return Error(Errc::kInvalidArgument, "a request is an object with \"op\"");
    }
    std::string op = request["op"].get<std::string>();
    if (op == "create") return create(request, defer_start);
    if (op == "delete") {
      if (!request.contains("id") || !request["id"].is_string()) {
        return Error(Errc::kInvalidArgument, "delete needs \"id\"");
      }
      return remove(request["id"].get<std::string>());
    }
    if (op == "ps") return ps();
    if (op == "policy_load") return policy_load(request);
    if (op == "log") {
      if (!request.contains("id") || !request["id"].is_string()) {
        return Error(Errc::kInvalidArgument, "log needs \"id\"");
      }
      std::string id = request["id"].get<std::string>();
      if (id == "host") {
        return json{{"ok", true},
                    {"path", config_.host_dir() + "/measurements.bin"},
                    {"pcr", config_.host_pcr}};
      }
      if (!tpm::valid_container_id(id)) return Error(Errc::kInvalidArgument, "bad container id");
      std::string path = config_.containers_dir() + "/" + id + "/measurements.bin";
      if (!fs::exists(path)) return Error(Errc::kNotFound, "no log for container " + id);
      return json{{"ok", true}, {"path", path}, {"pcr", 10}};
    }
    if (op == "status") {
      return json{{"ok", true}, {"state_dir", config_.state_dir}, {"pid", ::getpid()}};
    }
    return Error(Errc::kInvalidArgument, "unknown op " + printable(op));
  }();
  if (!answer) {
    // A refused start or policy is a decision the node's operator must be able to find in
    // the agent's log, not only in the runtime's output.
    std::string op = request.is_object() && request.contains("op") && request["op"].is_string()
                         ? request["op"].get<std::string>()
                         : "";
    if (op == "create") spdlog::warn("container start refused: {}", answer.error().message());
    if (op == "policy_load") spdlog::warn("policy refused: {}", answer.error().message());
    return {{"ok", false}, {"error", answer.error().message()}};
  }
  return std::move(*answer);
}

// --- control socket -----------------------------------------------------------------------

void AgentImpl::serve_connection(UniqueFd fd) {
  auto done = [&] {
    std::lock_guard lock(connections_mutex_);
    --connections_;
    connections_cv_.notify_all();
  };
  auto uid = peer_uid(fd.get());
  auto reply = [&](const json& doc) {
    std::string text = doc.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    (void)write_all(fd.get(), as_bytes(text));
  };
  if (!uid || *uid != 0) {
    reply({{"ok", false}, {"error", "only root may talk to ctrustd"}});
    done();
    return;
  }
  auto line = read_line(fd.get(), kMaxRequest, 10000);
  if (!line) {
    reply({{"ok", false}, {"error", line.error().message()}});
    done();
    return;
  }
  auto request = parse_json_strict(*line, 64);
  if (!request) {
    reply({{"ok", false}, {"error", "malformed request: " + request.error().message()}});
    done();
    return;
  }
  // Untrusted: "op" may be anything (value() would throw on a non-string).
  auto op = request->is_object() ? request->find("op") : request->end();
  if (op != request->end() && op->is_string() && op->get_ref<const std::string&>() == "events") {
    reply({{"ok", true}});
    std::lock_guard lock(subscribers_mutex_);
    subscribers_.push_back(std::move(fd));
    done();
    return;
  }
  // A start (the hook's create): its answer first, so that the runtime goes on while the
  // agent extends and syncs what the start logged (settle_start).
  bool starting =
      op != request->end() && op->is_string() && op->get_ref<const std::string&>() == "create";
  json answer = handle(*request, starting);
  reply(answer);
  if (starting && answer.value("ok", false)) {
    std::string id = answer["container"].value("id", "");
    if (auto c = containers_.find(id)) (void)settle_start(*c);
  }
  done();
}

Result<void> AgentImpl::serve() {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd listener, listen_control(config_.socket));
  spdlog::info("listening on {}", config_.socket);
  while (!stopping_) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int ready = ::poll(fds, 2, 1000);
    if (ready <= 0) continue;
    if ((fds[0].revents & POLLIN) == 0) continue;
    UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) continue;
    {
      std::lock_guard lock(connections_mutex_);
      if (connections_ >= 64) continue;  // closes it: a flood does not take the agent down
      ++connections_;
    }
    std::thread([this, c = std::move(conn)]() mutable { serve_connection(std::move(c)); }).detach();
  }
  ::unlink(config_.socket.c_str());
  return ok_result();
}

}  // namespace ctrust::agent
