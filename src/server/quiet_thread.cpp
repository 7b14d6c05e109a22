#include "server/quiet_thread.hpp"

#include <pthread.h>
#include <signal.h>

namespace ferry::server {

std::unique_ptr<boost::asio::thread_pool> make_quiet_thread() {
  // (The new thread inherits the mask in force when it is made.)
  sigset_t all, previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &previous);
  auto pool = std::make_unique<boost::asio::thread_pool>(1);
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return pool;
}

}  // namespace ferry::server
