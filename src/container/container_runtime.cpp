#include "container/container_runtime.hpp"

#include <cxxabi.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <ferry/errors.hpp>
#include <iostream>
#include <mutex>
#include <thread>

#include "client/client.hpp"
#include "container/throw_trace.hpp"
#include "runtime/process_client.hpp"

namespace ferry::container {

namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

/// Runs inputs of one blocking function on up to max_inputs threads, started as inputs arrive.
/// Thread-safe: submit() is called from the client's I/O thread, workers take inputs under mu_.
class input_runner {
 public:
  input_runner(const detail::function_entry& function) : function_(function) {}
  ~input_runner() {
    for (auto& t : threads_) t.detach();  // the process exits with _Exit; bodies may still be running
  }

  /// Inputs can arrive before connect() has returned the client: workers wait for it.
  void set_client(std::shared_ptr<client::client> c) {
    {
      std::lock_guard lock(mu_);
      client_ = std::move(c);
    }
    ready_.notify_all();
  }

  void submit(client::input in) {
    std::unique_lock lock(mu_);
    queue_.push_back(std::move(in));
    // One thread per input waiting beyond the idle ones, up to max_inputs.
    if (queue_.size() > idle_ && threads_.size() < static_cast<std::size_t>(function_.options.max_inputs)) {
      threads_.emplace_back([this] { work(); });
    }
    lock.unlock();
    ready_.notify_one();
  }

 private:
  void work() {
    for (;;) {
      std::unique_lock lock(mu_);
      ++idle_;
      ready_.wait(lock, [this] { return !queue_.empty() && client_; });
      --idle_;
      client::input in = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      run(in);
    }
  }

  void run(const client::input& in) {
    detail::buffer result;
    wire::error_record error{wire::status::ok, "", "", function_.name, in.call_id, ""};
    try {
      function_.invoke(detail::reader{in.arguments.view()}, result);
    } catch (const ArgumentError& e) {
      error.code = wire::status::bad_arguments;
      error.message = e.what();
    } catch (const std::exception& e) {
      error.code = wire::status::remote_exception;
      error.type = demangle(typeid(e).name());
      error.message = e.what();
      error.stack = last_throw_stack();
    } catch (...) {
      error.code = wire::status::remote_exception;
      const std::type_info* type = abi::__cxa_current_exception_type();
      error.type = type ? demangle(type->name()) : "unknown";
      error.message = "(an exception not derived from std::exception)";
      error.stack = last_throw_stack();
    }
    try {
      client_->send_output(in.id, error.code, [&](detail::buffer& out) {
        if (error.code == wire::status::ok) {
          out.append(result.data(), result.size());
        } else {
          wire::encode_error(out, error);
        }
      });
    } catch (const PayloadTooLargeError& e) {
      error.code = wire::status::payload_too_large;
      error.message = std::string("the result of '") + function_.name + "' is too large: " + e.what();
      client_->send_output(in.id, error.code, [&](detail::buffer& out) { wire::encode_error(out, error); });
    }
  }

  const detail::function_entry& function_;
  std::mutex mu_;
  std::shared_ptr<client::client> client_;  // guarded by mu_ until set, then read-only
  std::condition_variable ready_;
  std::deque<client::input> queue_;   // guarded by mu_
  std::vector<std::thread> threads_;  // guarded by mu_
  std::size_t idle_ = 0;              // guarded by mu_
};

}  // namespace

bool in_container() { return std::getenv("FERRY_CONTAINER_ID") != nullptr; }

int run_container(const detail::app_state& app) {
  // Die with the server that started us, even when it is killed outright.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (std::to_string(::getppid()) != env_or_empty("FERRY_PARENT_PID")) return 0;

  const std::string function_name = env_or_empty("FERRY_FUNCTION");
  const std::string token = env_or_empty("FERRY_TOKEN");
  ::unsetenv("FERRY_TOKEN");  // the body has no business with it
  if (env_or_empty("FERRY_APP") != app.name) {
    std::fprintf(stderr, "ferry container: this binary declares app '%s', but the server started it for app '%s'\n",
                 app.name.c_str(), env_or_empty("FERRY_APP").c_str());
    return 3;
  }
  const detail::function_entry* function = app.find(function_name);
  if (!function) {
    std::fprintf(stderr, "ferry container: app '%s' in this binary does not declare function '%s'\n", app.name.c_str(),
                 function_name.c_str());
    return 3;
  }
  record_throw_stacks();

  input_runner runner(*function);
  client::connect_options options;
  options.server = client::endpoint::parse(env_or_empty("FERRY_SERVER"));
  options.token = token;
  options.role = wire::peer_role::container;
  options.container_id = std::strtoull(env_or_empty("FERRY_CONTAINER_ID").c_str(), nullptr, 10);
  std::shared_ptr<client::client> c;
  try {
    c = client::client::connect(options, [&runner](client::input in) { runner.submit(std::move(in)); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry container: %s\n", e.what());
    return 4;
  }
  runtime::set_process_client(c);  // before any body runs: bodies make nested calls through it
  runner.set_client(c);
  c->wait_closed();
  // The server let us go (or went away). Bodies still running belong to a container being stopped:
  // leave without running static destructors under them.
  std::cout.flush();
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace ferry::container
