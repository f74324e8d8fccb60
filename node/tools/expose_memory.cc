// expose-memory: serve an in-memory LUN as a block device until SIGINT/SIGTERM.
//   expose-memory [--size-mib N] [--block-size B] [--backend fuse_loop|nbd] [--threads N]
//                 [--verbose]
// Prints the device path as its last line once the device is ready, then waits; on the
// signal it detaches (flush, remove the device) and exits 0. For benchmarks and demos.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "iser/base/logging.h"
#include "node/exposure/fuse_loop/fuse_loop_exposure.h"
#include "node/exposure/memory_block_backend.h"
#include "node/exposure/nbd/nbd_exposure.h"

int main(int argc, char** argv) {
  uint64_t size_mib = 1024;
  uint32_t block_size = 4096;
  std::string backend_name = "fuse_loop";
  int threads = 16;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "expose-memory: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--size-mib") {
      size_mib = std::strtoull(next(), nullptr, 10);
    } else if (a == "--block-size") {
      block_size = static_cast<uint32_t>(std::strtoul(next(), nullptr, 10));
    } else if (a == "--backend") {
      backend_name = next();
    } else if (a == "--verbose") {
      iser::SetLogLevel(iser::LogLevel::kDebug);
    } else if (a == "--threads") {
      threads = std::atoi(next());
    } else {
      std::fprintf(stderr,
                   "usage: expose-memory [--size-mib N] [--block-size B] "
                   "[--backend fuse_loop|nbd] [--threads N] [--verbose]\n");
      return 2;
    }
  }
  // Block the signals before any thread starts so that only sigwait() sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto backend = iser::node::MemoryBlockBackend::Create(size_mib << 20, block_size);
  if (!backend.ok()) {
    std::fprintf(stderr, "expose-memory: %s\n", backend.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<iser::node::Exposure> exposure;
  if (backend_name == "fuse_loop") {
    iser::node::FuseLoopOptions fl;
    fl.max_threads = threads;
    exposure = std::make_unique<iser::node::FuseLoopExposure>(fl);
  } else if (backend_name == "nbd") {
    exposure = std::make_unique<iser::node::NbdExposure>();
  } else {
    std::fprintf(stderr, "expose-memory: unknown backend %s\n", backend_name.c_str());
    return 2;
  }
  auto dev = exposure->Expose(**backend, {.name = "memory"});
  if (!dev.ok()) {
    std::fprintf(stderr, "expose-memory: %s\n", dev.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", (*dev)->device_path().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  absl::Status s = (*dev)->Detach();
  if (!s.ok()) {
    std::fprintf(stderr, "expose-memory: detach: %s\n", s.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr,
               "expose-memory: detached after %llu reads, %llu writes, %llu discards, "
               "max concurrency %llu\n",
               static_cast<unsigned long long>((*backend)->reads()),
               static_cast<unsigned long long>((*backend)->writes()),
               static_cast<unsigned long long>((*backend)->discards()),
               static_cast<unsigned long long>((*backend)->max_concurrency()));
  return 0;
}
