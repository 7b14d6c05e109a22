#include "server/call_history.hpp"

namespace ferry::server {

call_summary& call_history::next_slot() {
  call_summary& slot = slots_[next_];
  next_ = (next_ + 1) % slots_.size();
  if (size_ < slots_.size()) ++size_;
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
