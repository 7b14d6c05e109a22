#include "runtime/progress_bar.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "client/terminal.hpp"

namespace ferry::runtime {

namespace {

std::string format_duration(double seconds) {
  const long s = std::lround(seconds);
  char text[32];
  if (s >= 3600) {
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(text, sizeof text, "%ld:%02ld", s / 60, s % 60);
  }
  return text;
}

std::string format_rate(double per_second) {
  char text[32];
  if (per_second >= 1e6) {
    std::snprintf(text, sizeof text, "%.1fM/s", per_second / 1e6);
  } else if (per_second >= 1e4) {
    std::snprintf(text, sizeof text, "%.1fk/s", per_second / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.0f/s", per_second);
  }
  return text;
}

}  // namespace

bool progress_bar::wanted() {
  const char* setting = std::getenv("FERRY_PROGRESS");
  if (setting && std::strcmp(setting, "0") == 0) return false;
  return ::isatty(STDERR_FILENO) == 1 && std::getenv("FERRY_CONTAINER_ID") == nullptr;
}

progress_bar::progress_bar(std::string label, std::size_t total)
    : label_(std::move(label)), total_(total), enabled_(total > 0 && wanted()) {}

progress_bar::~progress_bar() {
  if (!enabled_) return;
  std::lock_guard lock(mu_);
  if (!finished_) client::end_bar();  // leave the last (unfinished) bar on its line
}

void progress_bar::update(std::size_t done) {
  if (!enabled_) return;
  std::lock_guard lock(mu_);
  if (finished_) return;
  const bool last = done >= total_;
  const auto now = std::chrono::steady_clock::now();
  if (!last && now - drawn_ < std::chrono::milliseconds(100)) return;
  drawn_ = now;
  draw(done, last);
  finished_ = last;
}

void progress_bar::draw(std::size_t done, bool last) {
  constexpr int width = 24;
  const double fraction = static_cast<double>(done) / static_cast<double>(total_);
  const int filled = static_cast<int>(fraction * width);
  std::string bar;
  for (int i = 0; i < width; ++i) bar += i < filled ? "\u2588" : "\u2591";
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  std::string tail;
  if (last) {
    tail = "in " + format_duration(elapsed);
  } else if (rate > 0) {
    tail = "ETA " + format_duration(static_cast<double>(total_ - done) / rate);
  }
  char counts[96];
  std::snprintf(counts, sizeof counts, " %zu/%zu %3.0f%% ", done, total_, fraction * 100);
  client::draw_bar(label_ + " " + bar + counts + format_rate(rate) + " " + tail);
  if (last) client::end_bar();
}

}  // namespace ferry::runtime
