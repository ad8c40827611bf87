-- One database per node (run once by the postgres image on an empty data volume).
CREATE DATABASE hashfed_police OWNER hashfed;
CREATE DATABASE hashfed_hotline OWNER hashfed;
CREATE DATABASE hashfed_platform OWNER hashfed;
