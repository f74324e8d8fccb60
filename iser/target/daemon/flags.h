// iser-target's command line (and config file, which takes the same options one per
// line without the leading dashes: "lun /var/lib/x.img").
#ifndef ISER_TARGET_DAEMON_FLAGS_H_
#define ISER_TARGET_DAEMON_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "iser/base/logging.h"
#include "iser/login/negotiation.h"

namespace iser::target {

struct LunFlags {
  std::string path;
  uint64_t size_bytes = 0;  // 0: use the file as it is
  uint32_t block_size = 512;
  bool read_only = false;
};

struct TargetFlags {
  std::string iqn;
  std::string alias;
  std::vector<LunFlags> luns;
  login::ChapCredentials chap;
  login::ChapCredentials mutual_chap;
  std::vector<std::string> allowed_initiators;
};

struct DaemonFlags {
  std::vector<std::string> listen;
  // Which transports the portals serve: "tcp", "iser" (software iWARP) or "any" (both
  // on one port, told apart by a connection's first bytes).
  std::string transport = "any";
  // MPA CRC32C (RFC 5044 sec 4.4): on by default; off only by this explicit choice, and
  // then still on when the initiator asks for it.
  bool mpa_crc = true;
  // iSCSI digests (RFC 7143 sec 13.1): CRC32C when the initiator offers it, else None.
  bool digests = false;
  std::vector<TargetFlags> targets;
  uint32_t queue_depth = 128;
  LogLevel log_level = LogLevel::kInfo;
  absl::Duration drain_timeout = absl::Seconds(30);
  absl::Duration busy_poll = absl::Microseconds(200);
  bool help = false;
};

absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, char** argv);
// "1G", "512M", "4096", "1.5T" -> bytes (binary units).
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);
const char* DaemonUsage();

}  // namespace iser::target

#endif  // ISER_TARGET_DAEMON_FLAGS_H_
