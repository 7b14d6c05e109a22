#include "server/clock.hpp"

#include <boost/asio/steady_timer.hpp>

namespace ferry::server {

namespace {

class steady_timer final : public clock::timer {
 public:
  steady_timer(const boost::asio::any_io_executor& executor, clock::time_point when, std::function<void()> fire)
      : timer_(executor, when), armed_(std::make_shared<bool>(true)) {
    // (Asio runs a handler whose timer expired even if the timer is destroyed before the handler runs: the
    // flag makes destruction a cancellation in every case.)
    timer_.async_wait([armed = armed_, fire = std::move(fire)](boost::system::error_code ec) {
      if (!ec && *armed) fire();
    });
  }
  ~steady_timer() override { *armed_ = false; }

 private:
  boost::asio::steady_timer timer_;
  std::shared_ptr<bool> armed_;
};

class steady_clock final : public clock {
 public:
  explicit steady_clock(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}
  time_point now() const override { return std::chrono::steady_clock::now(); }
  std::unique_ptr<timer> at(time_point when, std::function<void()> fire) override {
    return std::make_unique<steady_timer>(executor_, when, std::move(fire));
  }

 private:
  boost::asio::any_io_executor executor_;
};

}  // namespace

std::unique_ptr<clock> make_steady_clock(boost::asio::any_io_executor executor) {
  return std::make_unique<steady_clock>(std::move(executor));
}

}  // namespace ferry::server
