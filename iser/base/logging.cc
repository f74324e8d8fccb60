#include "iser/base/logging.h"

#include <atomic>
#include <cstdio>
#include <cstring>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace iser {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

void LogLine(LogLevel level, const char* file, int line, std::string_view message) {
  static constexpr char kTags[] = {'D', 'I', 'W', 'E'};
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  std::string ts = absl::FormatTime("%H:%M:%E6S", absl::Now(), absl::LocalTimeZone());
  // One fprintf per line so concurrent threads do not interleave within a line.
  std::fprintf(stderr, "%c %s %s:%d] %.*s\n", kTags[static_cast<int>(level)], ts.c_str(), base,
               line, static_cast<int>(message.size()), message.data());
}

}  // namespace iser
