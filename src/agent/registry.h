// The containers the agent watches, and the maps that attribute a kernel event to one of
// them: by the mount a file came through, by a marked filesystem and the asking process's
// mount namespace, by mount namespace, and by the agent's container number (the exec
// gate's key).
//
// Thread safety: every method may be called from any thread. Lookups take a shared lock,
// so the fanotify thread and the hashing workers never wait for one another here.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/container.h"

namespace ctrust::agent {

class ContainerRegistry {
 public:
  // A number no other container of this agent has had.
  std::uint64_t next_number() { return next_number_++; }

  // Registers `c` by id, number and (if known) mount namespace; false when the id is taken.
  // Its marks are registered apart (add_marks), once they are in place.
  bool add(const std::shared_ptr<Container>& c);
  // Makes the container's marks find it. A device another container has marks on too may
  // not be cached in the kernel for either (an ignore mark is per inode and would skip the
  // other's judgement): the numbers of those other containers are returned.
  std::vector<std::uint64_t> add_marks(const std::shared_ptr<Container>& c);
  // Unregisters container `id` and its mount marks; null when there is none.
  std::shared_ptr<Container> remove(const std::string& id);
  // Gives up one filesystem mark on `dev`; true when no container has one there any more.
  bool release_filesystem_mark(dev_t dev);
  // Forgets everything (the agent is stopping).
  void clear();

  std::shared_ptr<Container> find(const std::string& id) const;
  std::shared_ptr<Container> by_number(std::uint64_t number) const;
  std::vector<std::shared_ptr<Container>> all() const;
  std::set<ino_t> mount_namespaces() const;
  // Another gated container than `except` on cgroup v2 `cgroup_id`, or null.
  std::shared_ptr<Container> gated_on(std::uint64_t cgroup_id, const Container* except) const;

  // The container a permission event on a file of mount `mnt_id`, device `dev`, asked by
  // process `pid`, belongs to: the mount's mark, or a filesystem mark on `dev` and the
  // process's mount namespace. Null: no container's file.
  std::shared_ptr<Container> attribute(std::uint64_t mnt_id, dev_t dev, pid_t pid) const;
  // The container whose mount namespace is `mnt_ns`, and in `*marked` whether a file on
  // mount `mnt_id`, device `dev` came through one of its marks (so fanotify asked).
  std::shared_ptr<Container> in_mount_namespace(ino_t mnt_ns, std::uint64_t mnt_id, dev_t dev,
                                                bool* marked) const;

 private:
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<Container>> containers_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Container>> by_mount_;
  std::unordered_map<ino_t, std::shared_ptr<Container>> by_mnt_ns_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Container>> by_number_;
  std::multiset<dev_t> filesystem_marks_;
  std::atomic<std::uint64_t> next_number_{1};
};

}  // namespace ctrust::agent
