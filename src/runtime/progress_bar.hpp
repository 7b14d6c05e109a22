// The progress bar f.map draws on stderr while it runs: done/total, rate and time left. Drawn only when
// stderr is a terminal (never in containers, pipes or CI logs); FERRY_PROGRESS=0 turns it off.
//
// Concurrency: thread-safe; redraws at most every 100 ms whatever the update rate.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>

namespace ferry::runtime {

class progress_bar {
 public:
  progress_bar(std::string label, std::size_t total);
  ~progress_bar();
  progress_bar(const progress_bar&) = delete;
  progress_bar& operator=(const progress_bar&) = delete;

  /// `done` items have finished.
  void update(std::size_t done);

  /// Whether stderr gets a bar (it is a terminal, and FERRY_PROGRESS is not 0).
  static bool wanted();

 private:
  void draw(std::size_t done, bool last);  // requires mu_

  const std::string label_;
  const std::size_t total_;
  const bool enabled_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::mutex mu_;
  std::chrono::steady_clock::time_point drawn_{};  // guarded by mu_
  bool finished_ = false;                          // guarded by mu_
};

}  // namespace ferry::runtime
