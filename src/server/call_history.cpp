#include "server/call_history.hpp"

namespace ferry::server {

call_summary& call_history::next_slot() {
  if (slots_.size() < capacity_) {
    ++size_;
    next_ = slots_.size() + 1 == capacity_ ? 0 : slots_.size() + 1;
    return slots_.emplace_back();
  }
  call_summary& slot = slots_[next_];
  next_ = (next_ + 1) % slots_.size();
  return slot;
}

const call_summary* call_history::find(const std::string& call_id) const {
  const call_summary* found = nullptr;
  for_each_newest_first([&](const call_summary& c) {
    if (c.call_id == call_id) found = &c;
    return found == nullptr;
  });
  return found;
}

}  // namespace ferry::server
