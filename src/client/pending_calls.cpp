#include "client/pending_calls.hpp"

#include "base/check.hpp"

namespace ferry::client {

bool pending_calls::add(std::uint64_t id, pending_call& call) {
  shard& s = shard_of(id);
  std::lock_guard lock(s.mu);
  if (s.closed) return false;
  const bool added = s.calls.try_emplace(id, std::move(call)).second;
  FERRY_CHECK(added, "a call id that is pending already was added again");
  return true;
}

std::optional<pending_call> pending_calls::take(std::uint64_t id) {
  shard& s = shard_of(id);
  std::lock_guard lock(s.mu);
  auto it = s.calls.find(id);
  if (it == s.calls.end()) return std::nullopt;
  std::optional<pending_call> call(std::move(it->second));
  s.calls.erase(it);
  return call;
}

std::vector<std::uint64_t> pending_calls::ids_in_group(const void* group) const {
  std::vector<std::uint64_t> ids;
  for (const shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [id, call] : s.calls) {
      if (call.group == group) ids.push_back(id);
    }
  }
  return ids;
}

std::vector<pending_call> pending_calls::close(const std::string& reason) {
  FERRY_CHECK(closed_reason_.empty() && !reason.empty(), "the pending calls closed twice, or without a reason");
  closed_reason_ = reason;
  std::vector<pending_call> taken;
  for (shard& s : shards_) {
    std::lock_guard lock(s.mu);
    s.closed = true;
    for (auto& [id, call] : s.calls) taken.push_back(std::move(call));
    s.calls.clear();
  }
  return taken;
}

std::string pending_calls::closed_reason() const {
  const shard& first = shards_[0];  // the first that close() closes
  std::lock_guard lock(first.mu);
  return first.closed ? closed_reason_ : std::string();
}

std::size_t pending_calls::size() const {
  std::size_t n = 0;
  for (const shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.calls.size();
  }
  return n;
}

}  // namespace ferry::client
