#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <ferry/app.hpp>
#include <ferry/ferry.hpp>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "base/secrets.hpp"
#include "client/client.hpp"
#include "container/container_runtime.hpp"
#include "runtime/app_state.hpp"
#include "runtime/logging.hpp"
#include "runtime/process_client.hpp"
#include "runtime/server_config.hpp"
#include "server/server.hpp"

namespace ferry {

namespace detail {

void throw_argument_error(const std::string& function, std::size_t position, const DecodeError& e) {
  throw ArgumentError("'" + function + "': argument " + std::to_string(position) + ": " + e.what());
}

void throw_argument_count_error(const std::string& function, std::size_t expected, const reader& r) {
  throw ArgumentError("'" + function + "' takes " + std::to_string(expected) + " argument" +
                      (expected == 1 ? "" : "s") + ", received " + describe_next(r));
}

}  // namespace detail

namespace {

/// A declaration the program cannot run with: a bad name, a name declared twice, options out of range.
/// Catchable (as std::invalid_argument) where it is made in a function; made at namespace scope, as usual, it
/// escapes a static initializer, where nothing can catch it: then the program prints it and exits with 1,
/// instead of std::terminate's abort.
class declaration_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

[[noreturn]] void throw_declaration_error(const std::string& message) {
  static const std::terminate_handler previous = std::set_terminate([] {
    if (std::exception_ptr escaped = std::current_exception()) {
      try {
        std::rethrow_exception(escaped);
      } catch (const declaration_error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        std::fflush(stderr);
        std::_Exit(1);
      } catch (...) {
      }
    }
    previous ? previous() : std::abort();
  });
  throw declaration_error(message);
}

/// What is wrong with `o`, or "" (the server applies the same rules to what programs register).
std::string options_problem(const FunctionOptions& o) {
  if (o.max_inputs < 1 || o.max_containers < 1) return "max_inputs and max_containers must be at least 1";
  if (o.min_containers < 0 || o.buffer_containers < 0 || o.min_containers > o.max_containers) {
    return "min_containers and buffer_containers must be at least 0, and min_containers at most max_containers";
  }
  if (o.retries.max_retries < 0 || !(o.retries.backoff_coefficient >= 1.0 && o.retries.backoff_coefficient <= 10.0) ||
      o.retries.initial_delay.count() < 0 || o.retries.max_delay.count() < 0) {
    return "retries: max_retries and the delays must be at least 0, and backoff_coefficient between 1 and 10";
  }
  if (o.timeout.count() < 0 || o.scaledown_window.count() < 0 || o.stall_threshold.count() <= 0) {
    return "timeout and scaledown_window must be at least 0, and stall_threshold more than 0";
  }
  return wire::resources_problem(o.cpu, o.memory_mb, o.gpus, o.placement);
}

void print_error(const std::exception& e) {
  std::cerr << "error: " << e.what() << '\n';
  if (const RemoteDetails* remote = remote_details(e); remote && !remote->stack().empty()) {
    std::cerr << "remote stack of " << remote->type() << " in '" << remote->function() << "' (call "
              << remote->call_id() << "):\n"
              << remote->stack();
  }
}

/// The embedded server: started in this process when no FERRY_SERVER is set, stopped when main ends.
class embedded_server {
 public:
  embedded_server() {
    server::server_options options;
    options.token = random_token();
    options.drain_timeout = std::chrono::milliseconds(0);  // the program is exiting: nobody awaits results
    token_ = options.token;
    server_ = std::make_unique<server::server>(std::move(options));
    thread_ = std::thread([this] { server_->run(); });
  }
  ~embedded_server() {
    server_->stop();
    thread_.join();
  }
  /// Its Unix socket (the program's connection costs less so), else its loopback TCP address.
  std::string address() const { return server_->local_address(); }
  const std::string& token() const { return token_; }

 private:
  std::string token_;
  std::unique_ptr<server::server> server_;
  std::thread thread_;
};

}  // namespace

App::App(std::string name) : state_(std::make_unique<detail::app_state>()) {
  if (!wire::valid_name(name)) {
    throw_declaration_error("ferry::App: '" + name + "' is not a valid app name: use " + wire::name_rule);
  }
  state_->name = std::move(name);
}

App::~App() = default;

const std::string& App::name() const noexcept { return state_->name; }

std::shared_ptr<const detail::function_entry> App::add(std::shared_ptr<detail::function_entry> entry) {
  if (!wire::valid_name(entry->name)) {
    throw_declaration_error("ferry: '" + entry->name + "' is not a valid function name: use " + wire::name_rule);
  }
  if (state_->find(entry->name)) {
    throw_declaration_error("ferry: app '" + state_->name + "' already declares a function '" + entry->name + "'");
  }
  if (const std::string problem = options_problem(entry->options); !problem.empty()) {
    throw_declaration_error("ferry: function '" + entry->name + "': " + problem);
  }
  entry->app = state_->name;
  state_->functions.push_back(entry);
  return entry;
}

int App::run(int argc, char** argv, const std::function<void()>& entry,
             const std::function<Task<void>()>& async_entry) {
  runtime::init_logging("warn");
  if (container::in_container()) {
    return container::run_container({state_->name, state_->functions, runtime::set_process_client});
  }
  if (std::getenv("FERRY_DESCRIBE")) {
    // `ferry deploy` asks the binary what it declares: [app name, function specs] as MessagePack on stdout.
    std::vector<wire::function_spec> specs;
    for (const auto& f : state_->functions) specs.push_back(client::spec_of(*f));
    detail::buffer out;
    codec<std::tuple<std::string, std::vector<wire::function_spec>>>::encode(out, {state_->name, specs});
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    return 0;
  }

  int exit_code = 0;
  std::unique_ptr<embedded_server> embedded;
  try {
    client::connect_options options;
    if (const char* address = std::getenv("FERRY_SERVER"); address && *address) {
      options = runtime::server_connect_options(address);
    } else {
      embedded = std::make_unique<embedded_server>();
      options.server = client::endpoint::parse(embedded->address());
      options.token = embedded->token();
    }
    auto c = client::client::connect(options);
    // Containers run this binary with the same arguments, so that a main that reads them before app.main (to
    // parse options, say) does the same in its containers.
    const std::vector<std::string> arguments(argv + std::min(argc, 1), argv + std::max(argc, 0));
    c->register_app(state_->name, std::filesystem::read_symlink("/proc/self/exe").string(), state_->functions,
                    arguments);
    runtime::set_process_client(c);
    try {
      if (async_entry) {
        detail::run_to_completion(async_entry());
      } else {
        entry();
      }
    } catch (...) {
      runtime::set_process_client(nullptr);
      throw;
    }
    runtime::set_process_client(nullptr);
  } catch (const std::exception& e) {
    print_error(e);
    exit_code = 1;
  }
  embedded.reset();
  return exit_code;
}

}  // namespace ferry
