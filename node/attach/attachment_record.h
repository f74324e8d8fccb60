// What iser-attach writes down about a live attachment: one flat JSON object per device
// in a state directory (default /run/iser-csi/attachments/<loopN>.json), written
// atomically (temp file + rename) once the device is ready and removed after a clean
// detach. Enough for --list, for --detach to find the serving process, and for a later
// successor process to know what to take over (portal, target, LUN, session ISID/TSIH,
// FUSE mount and loop device).
#ifndef NODE_ATTACH_ATTACHMENT_RECORD_H_
#define NODE_ATTACH_ATTACHMENT_RECORD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace iser::node {

inline constexpr char kDefaultAttachmentStateDir[] = "/run/iser-csi/attachments";

struct AttachmentRecord {
  std::string device;  // /dev/loopN
  std::string portal;
  std::string target;
  uint64_t lun = 0;
  std::string transport = "tcp";
  int64_t pid = 0;  // the process serving the device
  uint64_t size_bytes = 0;
  uint32_t block_size = 0;
  std::string isid;  // hex
  uint32_t tsih = 0;
  std::string exposure = "fuse_loop";
  std::string fuse_mount_dir;
  std::string fuse_file;
  // The FUSE connection's id under /sys/fs/fuse/connections (0: unknown); a stuck
  // attachment is aborted there.
  uint64_t fuse_connection = 0;
  int fuse_fd = -1;  // in the serving process
  int loop_fd = -1;
  std::string started;  // RFC 3339 UTC

  std::string ToJson() const;
  static absl::StatusOr<AttachmentRecord> FromJson(const std::string& text);
};

// <dir>/<basename of device>.json
std::string RecordPath(const std::string& dir, const std::string& device);
absl::Status WriteRecord(const std::string& dir, const AttachmentRecord& record);
absl::StatusOr<AttachmentRecord> ReadRecord(const std::string& path);
// Every parseable record in `dir` (none if it does not exist), sorted by device.
std::vector<AttachmentRecord> ListRecords(const std::string& dir);
// mkdir -p with mode 0755.
absl::Status MakeDirs(const std::string& dir);

}  // namespace iser::node

#endif  // NODE_ATTACH_ATTACHMENT_RECORD_H_
