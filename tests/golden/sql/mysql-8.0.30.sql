-- MySQL 8.0.30
-- replica, first run from coordinates
CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.32', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='pw\'x', SOURCE_LOG_FILE='mysql-bin.000002', SOURCE_LOG_POS=869, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, GET_SOURCE_PUBLIC_KEY=1
-- replica with GTID
CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.32', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='pw', SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, GET_SOURCE_PUBLIC_KEY=1
-- a working file/position replica moved to GTID (same point, no reset)
CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1
-- GTID: executed set, (MariaDB) position of file:pos
SELECT @@GLOBAL.gtid_executed
SELECT BINLOG_GTID_POS(%s, %s) AS g
-- replica with TLS verifying the source; a working replica moved to TLS; off
CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.32', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='pw', SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, SOURCE_SSL=1, SOURCE_SSL_CA='/etc/k3s-ha/db-tls/ca.crt', SOURCE_SSL_VERIFY_SERVER_CERT=1, GET_SOURCE_PUBLIC_KEY=1
CHANGE REPLICATION SOURCE TO SOURCE_SSL=1, SOURCE_SSL_CA='/etc/k3s-ha/db-tls/ca.crt', SOURCE_SSL_VERIFY_SERVER_CERT=1
CHANGE REPLICATION SOURCE TO SOURCE_SSL=0
-- credentials repair (keeps coordinates)
CHANGE REPLICATION SOURCE TO SOURCE_USER='repl', SOURCE_PASSWORD='pw'
START REPLICA
STOP REPLICA
STOP REPLICA IO_THREAD
SHOW REPLICA STATUS
SHOW MASTER STATUS
-- semi-sync
INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'
INSTALL PLUGIN rpl_semi_sync_replica SONAME 'semisync_replica.so'
SET GLOBAL rpl_semi_sync_source_enabled = ON
SET GLOBAL rpl_semi_sync_replica_enabled = ON
SET GLOBAL rpl_semi_sync_source_timeout = 10000
SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC
SET GLOBAL rpl_semi_sync_source_wait_no_replica = OFF
-- semi-sync config lines
plugin_load_add = semisync_source.so
plugin_load_add = semisync_replica.so
loose_rpl_semi_sync_source_enabled = ON
loose_rpl_semi_sync_replica_enabled = ON
loose_rpl_semi_sync_source_timeout = 10000
loose_rpl_semi_sync_source_wait_point = AFTER_SYNC
loose_rpl_semi_sync_source_wait_no_replica = OFF
-- users
SET SESSION sql_log_bin = 0
CREATE USER IF NOT EXISTS 'k3sha_admin'@'127.0.0.1' IDENTIFIED BY 'adm'
GRANT ALL PRIVILEGES ON *.* TO 'k3sha_admin'@'127.0.0.1' WITH GRANT OPTION
CREATE USER IF NOT EXISTS 'k3sha_admin'@'localhost' IDENTIFIED BY 'adm'
GRANT ALL PRIVILEGES ON *.* TO 'k3sha_admin'@'localhost' WITH GRANT OPTION
CREATE USER IF NOT EXISTS 'repl'@'10.0.0.32' IDENTIFIED BY 'pw'
ALTER USER 'repl'@'10.0.0.32' IDENTIFIED BY 'pw'
ALTER USER 'repl'@'10.0.0.32' REQUIRE NONE
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'10.0.0.32'
-- TLS only
CREATE USER IF NOT EXISTS 'repl'@'10.0.0.32' IDENTIFIED BY 'pw'
ALTER USER 'repl'@'10.0.0.32' IDENTIFIED BY 'pw'
ALTER USER 'repl'@'10.0.0.32' REQUIRE SSL
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'10.0.0.32'
CREATE USER IF NOT EXISTS 'haproxy-check'@'10.0.0.21' IDENTIFIED WITH mysql_native_password
CREATE USER IF NOT EXISTS 'haproxy-check'@'10.0.0.22' IDENTIFIED WITH mysql_native_password
-- caveat: None
CREATE DATABASE IF NOT EXISTS `k3s`
CREATE USER IF NOT EXISTS 'k3s'@'10.0.0.21' IDENTIFIED BY 'k3spw'
ALTER USER 'k3s'@'10.0.0.21' IDENTIFIED BY 'k3spw'
ALTER USER 'k3s'@'10.0.0.21' REQUIRE NONE
GRANT ALL PRIVILEGES ON `k3s`.* TO 'k3s'@'10.0.0.21'
-- TLS only
CREATE DATABASE IF NOT EXISTS `k3s`
CREATE USER IF NOT EXISTS 'k3s'@'10.0.0.41' IDENTIFIED BY 'k3spw'
ALTER USER 'k3s'@'10.0.0.41' IDENTIFIED BY 'k3spw'
ALTER USER 'k3s'@'10.0.0.41' REQUIRE SSL
GRANT ALL PRIVILEGES ON `k3s`.* TO 'k3s'@'10.0.0.41'
TRUNCATE TABLE performance_schema.host_cache
-- secure
SET SESSION sql_log_bin = 0
DROP USER IF EXISTS ''@'localhost'
DROP USER IF EXISTS 'root'@'%'
DROP DATABASE IF EXISTS test
DELETE FROM mysql.db WHERE Db = 'test' OR Db = 'test\\_%'
FLUSH PRIVILEGES
-- seed
mysqldump --single-transaction --source-data=2 --routines --events --triggers --databases k3s app
