#include "node/attach/attachment_record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace iser::node {
namespace {

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Parses a flat JSON object of string and integer values.
absl::StatusOr<std::map<std::string, std::string>> ParseFlat(const std::string& t) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  auto ws = [&] {
    while (i < t.size() && isspace(static_cast<unsigned char>(t[i]))) ++i;
  };
  auto str = [&](std::string* s) -> bool {
    if (i >= t.size() || t[i] != '"') return false;
    ++i;
    while (i < t.size() && t[i] != '"') {
      if (t[i] == '\\' && i + 1 < t.size()) {
        ++i;
        if (t[i] == 'u' && i + 4 < t.size()) {
          *s += static_cast<char>(std::stoi(t.substr(i + 1, 4), nullptr, 16));
          i += 5;
          continue;
        }
      }
      *s += t[i++];
    }
    if (i >= t.size()) return false;
    ++i;
    return true;
  };
  ws();
  if (i >= t.size() || t[i] != '{') return absl::InvalidArgumentError("not a JSON object");
  ++i;
  for (;;) {
    ws();
    if (i < t.size() && t[i] == '}') break;
    std::string key, value;
    if (!str(&key)) return absl::InvalidArgumentError("bad key");
    ws();
    if (i >= t.size() || t[i] != ':') return absl::InvalidArgumentError("missing ':'");
    ++i;
    ws();
    if (i < t.size() && t[i] == '"') {
      if (!str(&value)) return absl::InvalidArgumentError("bad string");
    } else {
      while (i < t.size() && (t[i] == '-' || isdigit(static_cast<unsigned char>(t[i])))) {
        value += t[i++];
      }
      if (value.empty()) return absl::InvalidArgumentError("bad value");
    }
    out[key] = value;
    ws();
    if (i < t.size() && t[i] == ',') {
      ++i;
      continue;
    }
    if (i < t.size() && t[i] == '}') break;
    return absl::InvalidArgumentError("expected ',' or '}'");
  }
  return out;
}

}  // namespace

std::string AttachmentRecord::ToJson() const {
  std::ostringstream o;
  o << "{\n"
    << "  \"device\": " << Quote(device) << ",\n"
    << "  \"portal\": " << Quote(portal) << ",\n"
    << "  \"target\": " << Quote(target) << ",\n"
    << "  \"lun\": " << lun << ",\n"
    << "  \"transport\": " << Quote(transport) << ",\n"
    << "  \"pid\": " << pid << ",\n"
    << "  \"size_bytes\": " << size_bytes << ",\n"
    << "  \"block_size\": " << block_size << ",\n"
    << "  \"isid\": " << Quote(isid) << ",\n"
    << "  \"tsih\": " << tsih << ",\n"
    << "  \"exposure\": " << Quote(exposure) << ",\n"
    << "  \"fuse_mount_dir\": " << Quote(fuse_mount_dir) << ",\n"
    << "  \"fuse_file\": " << Quote(fuse_file) << ",\n"
    << "  \"fuse_connection\": " << fuse_connection << ",\n"
    << "  \"fuse_fd\": " << fuse_fd << ",\n"
    << "  \"loop_fd\": " << loop_fd << ",\n"
    << "  \"started\": " << Quote(started) << "\n"
    << "}\n";
  return o.str();
}

absl::StatusOr<AttachmentRecord> AttachmentRecord::FromJson(const std::string& text) {
  absl::StatusOr<std::map<std::string, std::string>> m = ParseFlat(text);
  if (!m.ok()) return m.status();
  auto get = [&](const char* k) -> std::string {
    auto it = m->find(k);
    return it == m->end() ? std::string() : it->second;
  };
  auto num = [&](const char* k, int64_t def) -> int64_t {
    std::string v = get(k);
    if (v.empty()) return def;
    return std::strtoll(v.c_str(), nullptr, 10);
  };
  AttachmentRecord r;
  r.device = get("device");
  if (r.device.empty()) return absl::InvalidArgumentError("record without a device");
  r.portal = get("portal");
  r.target = get("target");
  r.lun = static_cast<uint64_t>(num("lun", 0));
  r.transport = get("transport");
  r.pid = num("pid", 0);
  r.size_bytes = static_cast<uint64_t>(num("size_bytes", 0));
  r.block_size = static_cast<uint32_t>(num("block_size", 0));
  r.isid = get("isid");
  r.tsih = static_cast<uint32_t>(num("tsih", 0));
  r.exposure = get("exposure");
  r.fuse_mount_dir = get("fuse_mount_dir");
  r.fuse_file = get("fuse_file");
  r.fuse_connection = static_cast<uint64_t>(num("fuse_connection", 0));
  r.fuse_fd = static_cast<int>(num("fuse_fd", -1));
  r.loop_fd = static_cast<int>(num("loop_fd", -1));
  r.started = get("started");
  return r;
}

std::string RecordPath(const std::string& dir, const std::string& device) {
  std::string base = device.substr(device.rfind('/') + 1);
  return absl::StrCat(dir, "/", base, ".json");
}

absl::Status MakeDirs(const std::string& dir) {
  std::string path;
  for (size_t pos = 0; pos != std::string::npos;) {
    size_t next = dir.find('/', pos + 1);
    path = dir.substr(0, next);
    pos = next;
    if (path.empty()) continue;
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("mkdir ", path, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteRecord(const std::string& dir, const AttachmentRecord& record) {
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  std::string path = RecordPath(dir, record.device);
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  std::string text = record.ToJson();
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("create ", tmp, ": ", std::strerror(errno)));
  bool ok =
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  int err = errno;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("write ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<AttachmentRecord> ReadRecord(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no attachment record ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<AttachmentRecord> r = AttachmentRecord::FromJson(ss.str());
  if (!r.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", r.status().message()));
  }
  return r;
}

std::vector<AttachmentRecord> ListRecords(const std::string& dir) {
  std::vector<AttachmentRecord> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
    absl::StatusOr<AttachmentRecord> r = ReadRecord(absl::StrCat(dir, "/", name));
    if (r.ok()) out.push_back(std::move(*r));
  }
  closedir(d);
  std::sort(out.begin(), out.end(), [](const AttachmentRecord& a, const AttachmentRecord& b) {
    return a.device < b.device;
  });
  return out;
}

}  // namespace iser::node
