#include "agent/registry.h"

#include <mutex>

namespace ctrust::agent {

bool ContainerRegistry::add(const std::shared_ptr<Container>& c) {
  std::unique_lock lock(mutex_);
  if (!containers_.emplace(c->id, c).second) return false;
  by_number_[c->number] = c;
  if (c->mnt_ns != 0) by_mnt_ns_[c->mnt_ns] = c;
  return true;
}

std::vector<std::uint64_t> ContainerRegistry::add_marks(const std::shared_ptr<Container>& c) {
  std::vector<std::uint64_t> shared_with;
  std::unique_lock lock(mutex_);
  for (const auto& m : c->marks) {
    if (m.filesystem) {
      filesystem_marks_.insert(m.dev);
    } else {
      by_mount_[m.mnt_id] = c;
    }
  }
  for (const auto& [id, other] : containers_) {
    if (other == c) continue;
    for (auto& om : other->marks) {
      for (auto& m : c->marks) {
        if (om.dev != m.dev) continue;
        om.kernel_cache->store(false);
        m.kernel_cache->store(false);
        shared_with.push_back(other->number);
      }
    }
  }
  return shared_with;
}

std::shared_ptr<Container> ContainerRegistry::remove(const std::string& id) {
  std::unique_lock lock(mutex_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return nullptr;
  std::shared_ptr<Container> c = it->second;
  containers_.erase(it);
  by_number_.erase(c->number);
  if (auto n = by_mnt_ns_.find(c->mnt_ns); n != by_mnt_ns_.end() && n->second == c) {
    by_mnt_ns_.erase(n);
  }
  for (const auto& m : c->marks) {
    if (m.filesystem) continue;
    if (auto b = by_mount_.find(m.mnt_id); b != by_mount_.end() && b->second == c) {
      by_mount_.erase(b);
    }
  }
  return c;
}

bool ContainerRegistry::release_filesystem_mark(dev_t dev) {
  std::unique_lock lock(mutex_);
  if (auto it = filesystem_marks_.find(dev); it != filesystem_marks_.end()) {
    filesystem_marks_.erase(it);
  }
  return !filesystem_marks_.contains(dev);
}

void ContainerRegistry::clear() {
  std::unique_lock lock(mutex_);
  by_mount_.clear();
  by_mnt_ns_.clear();
  by_number_.clear();
  filesystem_marks_.clear();
  containers_.clear();
}

std::shared_ptr<Container> ContainerRegistry::find(const std::string& id) const {
  std::shared_lock lock(mutex_);
  auto it = containers_.find(id);
  return it == containers_.end() ? nullptr : it->second;
}

std::shared_ptr<Container> ContainerRegistry::by_number(std::uint64_t number) const {
  std::shared_lock lock(mutex_);
  auto it = by_number_.find(number);
  return it == by_number_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Container>> ContainerRegistry::all() const {
  std::shared_lock lock(mutex_);
  std::vector<std::shared_ptr<Container>> out;
  out.reserve(containers_.size());
  for (const auto& [id, c] : containers_) out.push_back(c);
  return out;
}

std::set<ino_t> ContainerRegistry::mount_namespaces() const {
  std::shared_lock lock(mutex_);
  std::set<ino_t> out;
  for (const auto& [ns, c] : by_mnt_ns_) out.insert(ns);
  return out;
}

std::shared_ptr<Container> ContainerRegistry::gated_on(std::uint64_t cgroup_id,
                                                       const Container* except) const {
  std::shared_lock lock(mutex_);
  for (const auto& [id, other] : containers_) {
    if (other->gated && other->cgroup_v2.id == cgroup_id && other.get() != except) return other;
  }
  return nullptr;
}

std::shared_ptr<Container> ContainerRegistry::attribute(std::uint64_t mnt_id, dev_t dev,
                                                        pid_t pid) const {
  std::shared_lock lock(mutex_);
  if (auto it = by_mount_.find(mnt_id); it != by_mount_.end()) return it->second;
  if (filesystem_marks_.contains(dev)) {
    if (auto n = by_mnt_ns_.find(mount_ns(pid)); n != by_mnt_ns_.end()) return n->second;
  }
  return nullptr;
}

std::shared_ptr<Container> ContainerRegistry::in_mount_namespace(ino_t mnt_ns, std::uint64_t mnt_id,
                                                                 dev_t dev, bool* marked) const {
  std::shared_lock lock(mutex_);
  *marked = false;
  auto it = by_mnt_ns_.find(mnt_ns);
  if (it == by_mnt_ns_.end()) return nullptr;
  auto m = by_mount_.find(mnt_id);
  *marked = (m != by_mount_.end() && m->second == it->second) || filesystem_marks_.contains(dev);
  return it->second;
}

}  // namespace ctrust::agent
