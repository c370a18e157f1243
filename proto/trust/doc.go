// Package trust is the one rule for the files livecgi runs or reads with
// its user's rights: Check refuses a file that others could have replaced,
// changed or (with Options.Secret) read, following symlinks to the file
// they name and its directory. Options set apart only what really
// differs: secrets (the users file, the MQTT password and key) must not
// be readable by others, and those data files may live in a sticky
// directory such as /tmp (Options.StickyDirs); programs (plugins, exec's
// programs, the supervisor binary, auth_command) and the configuration
// files are checked with Options{}. Standard library only.
//
// trust.go holds it all: Check, Options, and Error, which names the file,
// the problem and the command that fixes it.
package trust
