// A thread for work kept off the server's event loop (hashing binaries, storing deploys).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <memory>

namespace ferry::server {

/// A pool of one thread that takes no signal: signals are the event loop's (a signalfd, or their default
/// action), so the thread must not be the one the kernel picks to deliver them to.
std::unique_ptr<boost::asio::thread_pool> make_quiet_thread();

}  // namespace ferry::server
