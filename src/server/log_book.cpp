#include "server/log_book.hpp"

#include <algorithm>

namespace ferry::server {

const log_entry& log_book::add(log_entry entry) {
  entry.seq = next_seq_++;
  if (lines_.size() >= std::max<std::size_t>(capacity_, 1)) lines_.pop_front();
  lines_.push_back(std::move(entry));
  return lines_.back();
}

std::vector<const log_entry*> log_book::find(const std::string& app, const std::string& call_id, std::uint64_t after,
                                             std::size_t limit) const {
  std::vector<const log_entry*> found;
  // Newest first, so that the limit keeps the newest; reversed at the end.
  for (auto it = lines_.rbegin(); it != lines_.rend() && found.size() < limit && it->seq > after; ++it) {
    if ((app.empty() || it->app == app) && (call_id.empty() || it->call_id == call_id)) found.push_back(&*it);
  }
  std::reverse(found.begin(), found.end());
  return found;
}

}  // namespace ferry::server
