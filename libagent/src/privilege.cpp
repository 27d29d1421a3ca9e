// SPDX-License-Identifier: MIT
#include "agent/privilege.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace agent {

bool drop_privileges(std::string_view user, std::string *err)
{
	std::string name(user);
	std::vector<char> buf(16384);
	passwd pw{}, *res = nullptr;
	int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &res);
	if (!res && !name.empty() && name.find_first_not_of("0123456789") == std::string::npos)
		rc = getpwuid_r(static_cast<uid_t>(strtoul(name.c_str(), nullptr, 10)), &pw, buf.data(),
				buf.size(), &res);
	if (!res) {
		*err = "drop privileges: no user " + name + (rc ? std::string(": ") + strerror(rc) : "");
		return false;
	}
	uid_t uid = pw.pw_uid;
	gid_t gid = pw.pw_gid;
	if (getuid() == uid && geteuid() == uid)
		return true;
	auto fail = [&](const char *what) {
		*err = std::string("drop privileges to ") + name + ": " + what + ": " + strerror(errno);
		return false;
	};
	if (initgroups(pw.pw_name, gid) < 0 && setgroups(1, &gid) < 0)
		return fail("setgroups");
	if (setresgid(gid, gid, gid) < 0)
		return fail("setresgid");
	if (setresuid(uid, uid, uid) < 0)
		return fail("setresuid");
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		errno = EPERM;
		return fail("root could be regained");
	}
	// Setting ids cleared the dumpable flag; core dumps stay off.
	return true;
}

} // namespace agent
