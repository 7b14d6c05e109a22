// Fakes for driving the scheduler without time passing or processes starting: a clock the test moves, and
// a launcher whose containers are records the test makes exit.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "server/clock.hpp"
#include "server/container_launcher.hpp"

namespace ferry::server::testing {

/// Time stands still until advance() moves it; the timers due by then fire in order of their time (then of
/// their arming), each seeing now() at its own time.
class fake_clock final : public clock {
 public:
  time_point now() const override { return now_; }
  std::unique_ptr<timer> at(time_point when, std::function<void()> fire) override {
    const key k{when, next_seq_++};
    pending_.emplace(k, std::move(fire));
    return std::make_unique<fake_timer>(*this, k);
  }
  /// Moves time on by `by`, firing what falls due (what comes due "now" fires too: advance(0ms)).
  void advance(duration by) {
    const time_point until = now_ + by;
    while (!pending_.empty() && pending_.begin()->first.first <= until) {
      auto due = pending_.extract(pending_.begin());
      now_ = std::max(now_, due.key().first);
      due.mapped()();
    }
    now_ = until;
  }
  std::size_t pending() const { return pending_.size(); }

 private:
  using key = std::pair<time_point, std::uint64_t>;
  class fake_timer final : public timer {
   public:
    fake_timer(fake_clock& c, key k) : clock_(c), key_(k) {}
    ~fake_timer() override { clock_.pending_.erase(key_); }

   private:
    fake_clock& clock_;
    key key_;
  };
  time_point now_{std::chrono::hours(1)};
  std::uint64_t next_seq_ = 0;
  std::map<key, std::function<void()>> pending_;
};

/// Containers as records: what was asked of each (terminate, kill), and exit() to end one as a process would.
class fake_launcher final : public container_launcher {
 public:
  struct process_record {
    container_spec spec;
    exit_handler on_exit;
    output_handler on_output;
    int terminated = 0;  // SIGTERMs sent
    bool killed = false;
    bool exited = false;
    bool reached_main = true;
  };

  class process final : public container_process {
   public:
    explicit process(process_record& r) : record_(r) {}
    std::int64_t pid() const override { return 1000 + static_cast<std::int64_t>(record_.spec.id); }
    void terminate() override { ++record_.terminated; }
    void kill() override { record_.killed = true; }
    void drain_output() override {}
    std::uint64_t rss_bytes() const override { return 0; }
    bool reached_main() override { return record_.reached_main; }

   private:
    process_record& record_;
  };

  std::unique_ptr<container_process> launch(const container_spec& spec, exit_handler on_exit,
                                            output_handler on_output) override {
    if (!fail_with.empty()) throw std::runtime_error(fail_with);
    if (!no_room(spec.need).empty()) throw no_capacity_error("full");
    auto& r = launched[number(spec.id)];
    r = std::make_unique<process_record>(process_record{spec, std::move(on_exit), std::move(on_output)});
    return std::make_unique<process>(*r);
  }

  /// Ends container `id`'s process (its number): `how` as the server would read its status ("exited with code 0",
  /// "was killed by signal 9 (SIGKILL)"), and `signal` the signal that killed it (0: it exited).
  void exit(std::uint64_t id, std::string how = "exited with code 0", int signal = 0) {
    process_record& r = *launched.at(id);
    r.exited = true;
    r.on_exit(container_exit{std::move(how), signal});
  }
  /// With `room` set, a host that holds that many processes (exited ones give theirs back).
  std::string no_room(const resources&) const override { return room && running() >= *room ? "the host is full" : ""; }
  std::optional<std::size_t> room;

  std::size_t running() const {
    std::size_t n = 0;
    for (const auto& [id, r] : launched) n += !r->exited;
    return n;
  }

  std::map<std::uint64_t, std::unique_ptr<process_record>> launched;  // by container id, as a number
  std::string fail_with;                                              // when set, launch() throws this
};

}  // namespace ferry::server::testing
