// A program that parses its arguments before app.main, as an ordinary command-line program does: its
// containers must get the same arguments (tests/e2e/standalone_test.cpp, deploy_test.cpp).
#include <cstring>
#include <ferry/ferry.hpp>
#include <iostream>
#include <string>

ferry::App app{"argv_app"};

std::string greeting;  // from the command line, in the program and in each container
auto greet = app.function("greet", [](std::string name) { return greeting + ", " + name; });

int main(int argc, char** argv) {
  if (argc != 2 || std::strlen(argv[1]) == 0) {
    std::cerr << "usage: argv_app GREETING\n";
    return 2;
  }
  greeting = argv[1];
  return app.main(argc, argv, [] { std::cout << greet.remote("world") << '\n'; });
}
