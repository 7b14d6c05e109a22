// The lines containers wrote, kept for a bounded window (the newest `capacity` lines) for `ferry logs`, the
// HTTP API and the dashboard. Internal: confined to the server's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "wire/protocol.hpp"

namespace ferry::server {

struct log_entry {
  std::uint64_t seq = 0;  // 1, 2, ... in the order the server read them
  double time = 0;        // unix seconds
  std::string app;
  std::string function;
  std::string call_id;  // "" when the line could not be attributed to a call
  std::uint64_t container_id = 0;
  wire::log_stream stream = wire::log_stream::stdout_stream;
  std::string text;  // without its newline

  wire::log_row row() const { return {seq, time, app, function, call_id, stream, text}; }
};

class log_book {
 public:
  explicit log_book(std::size_t capacity) : capacity_(capacity) {}

  /// Keeps `entry` (numbering it), dropping the oldest line when full; returns the kept entry.
  const log_entry& add(log_entry entry);

  /// The kept lines of `app` (and of `call_id` unless empty) numbered after `after`, oldest first, at most
  /// `limit` (the newest ones).
  std::vector<const log_entry*> find(const std::string& app, const std::string& call_id, std::uint64_t after,
                                     std::size_t limit) const;

 private:
  std::size_t capacity_;
  std::uint64_t next_seq_ = 1;
  std::deque<log_entry> lines_;
};

}  // namespace ferry::server
